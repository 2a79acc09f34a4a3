"""Packaging: a plain (non-editable) install works from any folder, and training needs nothing of the data extra.

The install test builds talkdit from a copy of this checkout into a temporary ``--target`` folder (no
dependencies: the test environment has them), then, from a folder outside the repository with only that
target on the path, composes every experiment from the configs the package ships and trains one step. The
Dockerfile, which cannot be built here, is checked against setup.cfg's extras and torch pins.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.conftest import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
# What only the `data` extra installs (setup.cfg): nothing on the training path may import it.
DATA_EXTRA_MODULES = ("mediapipe", "scenedetect", "cv2")
BLOCK_DATA_EXTRA = f"import sys\nfor name in {DATA_EXTRA_MODULES!r}:\n    sys.modules[name] = None\n"
# Left out of the copy that is built: environments, run outputs and build leftovers.
NOT_SOURCE = (".git", ".venv", "runs", "outputs", "demo_out", "build", "dist", "*.egg-info", "__pycache__")
NOT_SOURCE += (".pytest_cache", ".ruff_cache", "wandb", "lightning_logs")


def _python(code: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _build_isolation_args() -> list[str]:
    """``--no-build-isolation`` where this environment can build talkdit itself (no index needed then)."""
    try:
        import setuptools
    except ImportError:
        return []
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2])
    # setuptools >= 70.1 builds wheels alone; 69 (pyproject's minimum) needs the wheel package.
    if version >= (70, 1) or (version >= (69, 0) and importlib.util.find_spec("wheel") is not None):
        return ["--no-build-isolation"]
    return []


def test_training_and_launch_modules_import_nothing_from_the_data_extra():
    code = (
        BLOCK_DATA_EXTRA
        + "import importlib, pkgutil, launch, trainer\n"
        + "for pkg in (trainer, launch):\n"
        + "    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        + "        importlib.import_module(info.name)\n"
        + "print('imported', len(sys.modules))\n"
    )
    done = _python(code, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]


def test_validation_without_the_data_extra_validates_the_loss_and_refuses_videos_clearly(simple_shards):
    code = (
        BLOCK_DATA_EXTRA
        + "from trainer.config.compose import load_train_config\n"
        + "from trainer.config.errors import ConfigError\n"
        + "from trainer.runner import build_callbacks\n"
        + "on = ['experiment=smoke', 'data.shards=%s', 'validation.every_n_steps=2', 'validation.shards=%s']\n"
        + "print(len(build_callbacks(load_train_config(on + ['validation.num_clips=0']))))\n"
        + "try:\n"
        + "    build_callbacks(load_train_config(on))\n"
        + "except ConfigError as err:\n"
        + "    print(err)\n"
    ) % (simple_shards, simple_shards)
    done = _python(code, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    built, refusal = done.stdout.strip().splitlines()
    assert built == "1"
    assert "validation.num_clips" in refusal and "talkdit[data]" in refusal and "num_clips=0" in refusal


def test_a_run_validating_the_loss_only_needs_nothing_of_the_data_extra(simple_shards, tmp_path):
    # The validation callback's setup and its validations run; no metric network or OpenCV is touched.
    run_dir = tmp_path / "run"
    validation = ["validation.every_n_steps=1", f"validation.shards={simple_shards}", "validation.num_clips=0"]
    code = BLOCK_DATA_EXTRA + "from trainer.train import main\nsys.exit(main(sys.argv[1:]))\n"
    done = _python(code, *tiny_overrides(simple_shards, run_dir, 2, *validation), cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(run_dir.rglob("last.ckpt")), sorted(p.name for p in run_dir.rglob("*"))


@pytest.mark.slow
def test_a_plain_install_composes_every_experiment_and_trains_from_another_folder(simple_shards, tmp_path):
    src, target, elsewhere = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--quiet", "--target", str(target)]
    done = subprocess.run(
        [*pip, *_build_isolation_args(), str(src)], cwd=elsewhere, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    shutil.rmtree(src)  # nothing may be read from the copy that was built

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TALKDIT_SHARDS")}
    env["PYTHONPATH"] = str(target)
    # Every config file ships, and every experiment composes from the installed copy.
    code = (
        "import sys, trainer\n"
        "from trainer.config.compose import CONF_DIR, compose_config\n"
        f"assert trainer.__file__.startswith({str(target)!r}), trainer.__file__\n"
        f"assert str(CONF_DIR).startswith({str(target)!r}), CONF_DIR\n"
        "print(*sorted(str(p.relative_to(CONF_DIR)) for p in CONF_DIR.rglob('*.yaml')))\n"
        "for path in sorted((CONF_DIR / 'experiment').glob('*.yaml')):\n"
        "    cfg = compose_config('train', [f'experiment={path.stem}', 'data.shards=x.tar'])\n"
        "    assert cfg.experiment_name == path.stem\n"
    )
    done = _python(code, cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    shipped = done.stdout.split()
    assert shipped == sorted(str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml"))

    # The console script finds its configs.
    done = subprocess.run(
        [str(target / "bin" / "talkdit-train"), "experiment=smoke", "--cfg", "job"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "experiment_name: smoke" in done.stdout

    # One training step of the smoke model, with the data extra's modules unavailable.
    run_dir = tmp_path / "run"
    code = BLOCK_DATA_EXTRA + "from trainer.train import main\nsys.exit(main(sys.argv[1:]))\n"
    done = _python(code, *tiny_overrides(simple_shards, run_dir, 1), cwd=elsewhere, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(run_dir.rglob("last.ckpt")), sorted(p.name for p in run_dir.rglob("*"))


def test_the_dockerfile_installs_extras_setup_cfg_defines_and_the_pinned_torch_trio():
    """The image (which no CI here can build: no Docker daemon) asks only for what the package defines."""
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    extras = set(setup["options.extras_require"])
    pins = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\s*(torch|torchaudio|torchvision)==(\S+)", setup["options"]["install_requires"], re.M)
    }
    dockerfile = (REPO / "Dockerfile").read_text()
    (default_extras,) = re.findall(r"^ARG EXTRAS=(\S+)$", dockerfile, re.M)
    assert set(default_extras.split(",")) <= extras, f"Dockerfile EXTRAS={default_extras}; setup.cfg has {extras}"
    assert '".[${EXTRAS}]"' in dockerfile  # the package itself, not an editable checkout
    installed = dict(re.findall(r'"(torch|torchaudio|torchvision)==([^"]+)"', dockerfile))
    assert installed == pins and len(pins) == 3, f"Dockerfile pins {installed}; setup.cfg pins {pins}"
    (base_image,) = re.findall(r"^ARG BASE_IMAGE=\S+:(\S+?)-", dockerfile, re.M)
    assert base_image == pins["torch"], f"base image torch {base_image}, setup.cfg torch {pins['torch']}"
