"""Every entry point's command line: --help, --cfg job, unknown keys in every form, one-line errors.

The entry points share trainer/config/cli.py; these tests hold each of them to it, the way a user meets them.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from launch.entry_points import ENTRY_POINTS

REPO = Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m module args`` and whether it imported torch (printed last on stderr)."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{module!r}, *sys.argv[1:]]\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        "except SystemExit as e:\n"
        "    status = e.code\n"
        "else:\n"
        "    status = 0\n"
        "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_lists_keys_with_types_values_and_docs_without_torch(module):
    done = run_module(module, "--help")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(f"usage: python -m {module} ")
    assert "--cfg job" in out and "Keys (key: type = current value  # doc)" in out
    key_lines = [line for line in out.splitlines() if ": " in line and " = " in line and line.startswith("  ")]
    assert key_lines, out
    assert all("  # " in line for line in key_lines), [line for line in key_lines if "  # " not in line]
    assert done.stderr.strip().endswith("torch imported: False"), done.stderr


def test_train_help_shows_every_group_option_and_experiment():
    out = run_module("trainer.train", "--help").stdout
    conf = REPO / "conf"
    for group in ("model", "audio", "optim", "stage", "data", "strategy", "parallel", "logger"):
        options = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        line = next(line for line in out.splitlines() if line.startswith(f"  {group} "))
        assert all(o in line for o in options), (group, line)
    assert len(list((conf / "strategy").glob("*.yaml"))) == 6
    for name in ("demo", "edityourself_stage1", "edityourself_stage2"):
        assert f"  {name}" in out.split("Experiments")[1]
    assert "  optim.lr_adam: float = 1.0e-05  # " in out
    assert "  parallel.ulysses_degree: int = 1  # " in out


def test_help_shows_values_under_the_given_overrides():
    out = run_module("trainer.train", "--help", "experiment=smoke", "optim.lr_adam=0.02").stdout
    assert "  optim.lr_adam: float = 0.02  # " in out
    assert "  model.name: str = tiny  # " in out
    assert "  smoke              *" in out or "smoke" in out.split("Experiments")[1].split("*")[0]


CFG_JOB = {
    "trainer.train": (["experiment=smoke", "data.shards=/data/x.tar"], ["data", "shards"], "/data/x.tar"),
    "trainer.export": (["checkpoint=a.ckpt", "output_dir=out"], ["output_dir"], "out"),
    "data_prep.run": (["input_dir=/raw", "output_dir=/prep", "filters=demo"], ["probe", "min_frames"], 25),
    "eval.run": (["checkpoint=a.ckpt", "shards=x", "size=[64,96]"], ["size"], [64, 96]),
    "eval.dub": (["video=v.mp4", "audio=s.wav", "weights=w", "output=o.mp4"], ["audio"], "s.wav"),
    "launch.slurm": (["job=train", "cluster=local", "experiment=smoke"], ["experiment_name"], "smoke"),
    "launch.demo": (["num_videos=3"], ["num_videos"], 3),
    "data_prep.synthetic.cli": (["fps=30"], ["fps"], [30.0]),
}


@pytest.mark.parametrize("module", sorted(CFG_JOB))
def test_cfg_job_prints_the_resolved_config(module, tmp_path):
    overrides, path, expected = CFG_JOB[module]
    done = run_module(module, "--cfg", "job", *overrides)
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(done.stdout))
    value = docs[-1]
    for key in path:
        value = value[key]
    assert value == expected
    assert "${" not in done.stdout  # interpolations resolved
    assert not any(tmp_path.iterdir()) and not (REPO / "out").exists()


def test_report_cfg_job_is_the_saved_config_with_the_new_thresholds(tmp_path):
    from data_prep.ledger import rows_to_table, write_table
    from data_prep.run import load_config
    from trainer.config.compose import save_resolved_config

    save_resolved_config(load_config(["input_dir=/raw", f"output_dir={tmp_path}"]), tmp_path / "config.yaml")
    write_table(rows_to_table([]), tmp_path / "ledger.parquet")
    done = run_module("data_prep.report", "--cfg", "job", f"output_dir={tmp_path}", "sync.min_confidence=4.5")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["sync"]["min_confidence"] == 4.5


# A misspelt key of each entry point, what it should have been, and the other arguments the call needs.
MISSPELT = {
    "trainer.train": ("optim.lr_adm", "optim.lr_adam", ["experiment=smoke", "data.shards={tmp}/x.tar"]),
    "trainer.export": ("overwite", "overwrite", ["checkpoint={tmp}/c.ckpt", "output_dir={tmp}/out"]),
    "data_prep.run": ("sync.min_confidnce", "sync.min_confidence", ["input_dir={tmp}", "output_dir={tmp}/out"]),
    "data_prep.report": ("sync.min_confidnce", "sync.min_confidence", ["output_dir={tmp}/out"]),
    "eval.run": ("max_clip", "max_clips", ["checkpoint={tmp}/c.ckpt", "shards={tmp}/x.tar", "output_dir={tmp}/out"]),
    "eval.dub": ("overwite", "overwrite", ["video={tmp}/v.mp4", "audio={tmp}/s.wav", "output={tmp}/out"]),
    "launch.slurm": ("cluster.node", "cluster.nodes", ["job=train", "cluster=local", "experiment=smoke"]),
    "launch.demo": ("num_vidoes", "num_videos", ["out_dir={tmp}/out"]),
    "data_prep.synthetic.cli": ("num_vidoes", "num_videos", ["out_dir={tmp}/out"]),
}


@pytest.mark.parametrize("form", ["", "+", "++"])
@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_unknown_keys_are_refused_in_every_form(module, form, tmp_path, capsys):
    bad, good, args = MISSPELT[module]
    argv = [a.format(tmp=tmp_path) for a in args] + [f"{form}{bad}=1"]
    status = importlib.import_module(module).main(argv)
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert f"'{bad}'" in err and f"closest valid key is '{good}'" in err, err
    assert "To append" not in err and "use +" not in err
    assert not (tmp_path / "out").exists()


def test_a_forwarded_job_key_is_checked_by_launch_slurm(capsys):
    from launch.slurm import main

    assert main(["job=train", "cluster=local", "experiment=smoke", "+optim.lr_adm=1e-4", "dry_run=true"]) == 2
    assert "closest valid key is 'optim.lr_adam'" in capsys.readouterr().err


def test_a_new_key_inside_a_dict_key_is_accepted_in_every_form():
    from trainer.config.compose import compose_config

    for form in ("", "+", "++"):
        cfg = compose_config("train", ["experiment=smoke", f"{form}model.vae.arch.extra_option=3"])
        assert cfg.model.vae.arch.extra_option == 3


def test_a_group_option_that_does_not_exist_names_the_options(capsys):
    from trainer.train import main

    assert main(["strategy=deepspeed_zero4"]) == 2
    err = capsys.readouterr().err
    assert "config group 'strategy' has no option 'deepspeed_zero4'" in err and "deepspeed_zero3" in err


def test_unknown_flags_are_refused_with_the_options(capsys):
    from data_prep.run import main

    assert main(["--verbose"]) == 2
    assert "--help and --cfg job" in capsys.readouterr().err
