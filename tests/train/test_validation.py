"""Validation during training: held-out loss at fixed flow times, samples, metrics, videos; under DDP too."""

import csv
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import av
import pytest
import torch

from eval.validation import VALIDATION_DIR, ValidationCallback, _Clip, _ForwardCounter
from tests.ports import free_port
from tests.train.conftest import tiny_overrides
from tests.train.shards import write_simple_shards
from trainer.config.compose import load_train_config
from trainer.config.errors import ConfigError
from trainer.data.plan import decode_plan
from trainer.data.transforms import collate_clips
from trainer.held_out import held_out_errors, loss_plan_groups, quantile_key, rank_share
from trainer.run_dir import metrics_files
from trainer.runner import build_callbacks, build_trainer
from trainer.stage_model import build_stage_model
from trainer.train import run

QUANTILES = [0.1, 0.3, 0.5, 0.7, 0.9]


def val_rows(run_dir) -> list[dict]:
    """CSV rows that carry validation values."""
    with open(metrics_files(run_dir)[-1]) as fh:
        return [r for r in csv.DictReader(fh) if r.get("val/loss")]


def test_rank_share_pads_every_rank_to_the_same_length():
    assert rank_share(3, 0, 2) == ([0, 2], 2)
    assert rank_share(3, 1, 2) == ([1, 1], 1)  # pads with its own last clip
    assert rank_share(1, 1, 2) == ([0], 0)  # owns nothing: repeats another rank's clip, scores nothing
    assert rank_share(0, 0, 2) == ([], 0)
    for n in range(1, 6):
        shares = [rank_share(n, r, 3) for r in range(3)]
        assert len({len(ix) for ix, _ in shares}) == 1
        assert sorted(i for ix, real in shares for i in ix[:real]) == list(range(n))


def test_validation_runs_at_optimizer_step_boundaries_only(tmp_path, monkeypatch):
    cfg = load_train_config(
        [
            "experiment=smoke",
            f"data.shards={tmp_path}/x.tar",
            "validation.every_n_steps=2",
            f"validation.shards={tmp_path}",
        ]
    ).validation
    monkeypatch.setattr("eval.validation.expand_shards", lambda spec, key: [spec])
    cb = ValidationCallback(cfg, weights=object())
    seen = []
    monkeypatch.setattr(cb, "validate", lambda trainer, module: seen.append(trainer.global_step) or {"val/loss": 1.0})
    logged = []
    logger = SimpleNamespace(log_metrics=lambda values, step: logged.append(step))
    trainer = SimpleNamespace(accumulate_grad_batches=3, global_step=0, loggers=[logger], callback_metrics={})
    trainer.global_rank = 0
    module = SimpleNamespace()
    for batch_idx in range(18):  # 6 optimizer steps of 3 accumulated batches
        trainer.global_step = batch_idx // 3 + ((batch_idx + 1) % 3 == 0)
        cb.on_train_batch_end(trainer, module, None, None, batch_idx)
    assert seen == [2, 4, 6]
    assert logged == [1, 3, 5]  # Lightning's row of optimizer step N is N - 1
    assert trainer.callback_metrics["val/loss"] == 1.0


def test_validation_is_a_configured_callback_that_is_off_by_default(tmp_path):
    cfg = load_train_config(["experiment=smoke", f"data.shards={tmp_path}/x.tar"])
    assert cfg.validation.every_n_steps == 0
    trainer = build_trainer(cfg, tmp_path, False, build_callbacks(cfg))
    found = [c for c in trainer.callbacks if isinstance(c, ValidationCallback)]
    assert len(found) == 1 and not found[0].enabled
    dropped = load_train_config(["experiment=smoke", f"data.shards={tmp_path}/x.tar", "callbacks.validation=null"])
    assert build_callbacks(dropped) == []


def test_bad_callback_settings_name_the_key(tmp_path):
    base = ["experiment=smoke", f"data.shards={tmp_path}/x.tar"]
    with pytest.raises(ConfigError, match=r"validation\.modes.*v2v_self"):
        build_callbacks(load_train_config([*base, "validation.modes=[v2v_selfie]"]))
    with pytest.raises(ConfigError, match=r"validation\.modes.*non-empty"):
        build_callbacks(load_train_config([*base, "validation.modes=[]"]))
    # Inversion editing is an eval.run row only: validation names the modes it samples.
    with pytest.raises(ConfigError, match=r"validation\.modes.*\['v2v_self', 'v2v_novel', 'i2v'\]"):
        build_callbacks(load_train_config([*base, "validation.modes=[v2v_invert]"]))
    with pytest.raises(ConfigError, match=r"validation\.v2v_mask"):
        build_callbacks(load_train_config([*base, "validation.v2v_mask=mouth"]))
    with pytest.raises(ConfigError, match=r"callbacks\.validation\._target_.*eval\.nowhere"):
        build_callbacks(load_train_config([*base, "callbacks.validation._target_=eval.nowhere.Callback"]))
    with pytest.raises(ConfigError, match=r"callbacks\.lr\._target_.*not a lightning Callback"):
        build_callbacks(load_train_config([*base, "+callbacks.lr._target_=collections.OrderedDict"]))


def test_held_out_errors_are_fixed_and_depend_on_t(simple_shards, tmp_path):
    cfg = load_train_config(tiny_overrides(simple_shards, tmp_path / "run", 1))
    model, _ = build_stage_model(cfg)
    model.eval()
    groups = loss_plan_groups(cfg, sorted(__import__("glob").glob(simple_shards)), 5)
    assert len(groups) == 2  # 4 clips, 2 per batch: a single pass, no repeats
    batch = collate_clips([decode_plan(p, cfg.objective.num_reference_frames, "x") for p in groups[0]])
    sums, counts = held_out_errors(model, cfg, batch, QUANTILES, seed=3, identity_refs=True)
    again, _ = held_out_errors(model, cfg, batch, QUANTILES, seed=3, identity_refs=True)
    no_refs, counts_no_refs = held_out_errors(model, cfg, batch, QUANTILES, seed=3, identity_refs=False)
    assert torch.equal(sums, again)  # fixed generator: the same number at every validation
    assert len(set(sums.tolist())) == len(QUANTILES)
    assert torch.equal(counts, counts_no_refs) and counts[0] > 0  # the mask does not depend on t or refs
    assert not torch.equal(sums, no_refs)


@pytest.mark.slow
def test_single_process_run_logs_validation_and_writes_videos(simple_shards, tmp_path):
    result = run(
        tiny_overrides(
            simple_shards,
            tmp_path / "run",
            4,
            "validation.every_n_steps=2",
            f"validation.shards={simple_shards}",
            "validation.sample_steps=2",
        )
    )
    rows = val_rows(result.run_dir)
    assert [int(r["step"]) for r in rows] == [1, 3]  # after optimizer steps 2 and 4
    for r in rows:
        losses = [float(r[quantile_key(q)]) for q in QUANTILES]
        assert float(r["val/loss"]) == pytest.approx(sum(losses) / len(losses))
        assert max(losses) - min(losses) > 1e-3  # the loss at larger t differs from smaller t
        assert float(r["val/psnr"]) > 0 and r.get("val/ssim")
        assert not r.get("val/lpips")  # no weights in the environment: absent, not zero
    for step in (2, 4):
        videos = sorted((result.run_dir / VALIDATION_DIR / f"step{step:07d}").glob("*.mp4"))
        assert len(videos) == 2  # validation.num_clips
        with av.open(str(videos[0])) as container:
            assert container.streams.video and container.streams.audio


@pytest.mark.slow
def test_two_process_ddp_validation_agrees_across_ranks(tmp_path):
    write_simple_shards(tmp_path / "shards", num_clips=4, per_shard=1)
    write_simple_shards(tmp_path / "val", num_clips=6, per_shard=2)  # 3 loss batches: rank 1 pads one
    overrides = tiny_overrides(
        f"{tmp_path}/shards/*.tar",
        tmp_path / "run",
        4,
        "strategy.devices=2",
        "validation.every_n_steps=2",
        f"validation.shards={tmp_path}/val/*.tar",
        "validation.num_clips=3",  # rank 0 samples clips 0 and 2, rank 1 clip 1 and a padding repeat
        "validation.loss_batches=3",
        "validation.sample_steps=2",
        "validation.modes=[v2v_self,i2v]",
    )
    overrides = [o for o in overrides if not o.startswith("run_dir=")] + [f"run_root={tmp_path}/runs"]
    env = {**os.environ, "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", *overrides], capture_output=True, text=True, env=env, timeout=300
    )
    out = proc.stderr + proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    reported: dict[tuple[int, int], dict] = {}
    for step, rank, values in re.findall(r"validation at step (\d+) on rank (\d+): (\{.*\})", out):
        reported[int(step), int(rank)] = json.loads(values)
    assert set(reported) == {(2, 0), (2, 1), (4, 0), (4, 1)}
    for step in (2, 4):
        assert reported[step, 0] == reported[step, 1]  # all-reduced: every rank holds the same values
    (run_dir,) = list((tmp_path / "runs" / "smoke").iterdir())
    rows = val_rows(run_dir)
    assert [int(r["step"]) for r in rows] == [1, 3]
    for row, step in zip(rows, (2, 4)):
        for key, value in reported[step, 0].items():
            assert float(row[key]) == pytest.approx(value, rel=1e-6), key
        assert {"val/psnr", "val/i2v/psnr", quantile_key(0.9)} <= set(reported[step, 0])
        folder = run_dir / VALIDATION_DIR / f"step{step:07d}"
        assert len(list(folder.glob("*.mp4"))) == 3  # every rank's clips, written once by rank 0
        assert len(list((folder / "i2v").glob("*.mp4"))) == 3


def _equalise_worker(rank: int, port: int, forwards: int, out) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        dit = torch.nn.Linear(2, 2)
        counter = _ForwardCounter(dit)
        for _ in range(forwards):
            dit(torch.ones(1, 2))
        module = SimpleNamespace(dit=dit, device=torch.device("cpu"))
        ValidationCallback._equalise_forwards(SimpleNamespace(world_size=2), module, counter)
        out.put((rank, counter.count))
        counter.close()
    finally:
        torch.distributed.destroy_process_group()


def test_ranks_with_fewer_dit_forwards_repeat_their_last_one():
    # Under FSDP/ZeRO-3 each forward gathers weights with a collective: the counts must match on every rank.
    ctx = torch.multiprocessing.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_equalise_worker, args=(r, port, n, out)) for r, n in ((0, 3), (1, 1))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(out.get(timeout=5) for _ in procs) == [(0, 3), (1, 3)]


def test_rank_zero_writes_the_videos_and_logs_them_to_wandb(simple_shards, tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    from eval.clips import read_clips

    extra = ["validation.every_n_steps=1", "validation.modes=[v2v_self,i2v]", f"validation.shards={simple_shards}"]
    cfg = load_train_config(tiny_overrides(simple_shards, tmp_path / "run", 1, *extra))
    cb = ValidationCallback(cfg.validation, weights=object())
    cb.run_dir = tmp_path / "run"  # set from trainer.default_root_dir in setup()
    cb.clips = [_Clip(c, a, sr) for c, a, sr in read_clips(simple_shards, cfg, 2)]
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)  # no run starts until .experiment is read
    calls = []
    monkeypatch.setattr(logger, "log_video", lambda **kw: calls.append(kw))
    trainer = SimpleNamespace(world_size=1, is_global_zero=True, global_step=6, loggers=[logger])
    frames = {(mode, i): c.sample.frames for mode in ("v2v_self", "i2v") for i, c in enumerate(cb.clips)}
    cb._write_videos(trainer, frames)
    step = tmp_path / "run" / VALIDATION_DIR / "step0000006"
    keys = [c.sample.key for c in cb.clips]
    assert sorted(p.name for p in step.glob("*.mp4")) == sorted(f"{k}.mp4" for k in keys)
    assert sorted(p.name for p in (step / "i2v").glob("*.mp4")) == sorted(f"{k}.mp4" for k in keys)
    assert [c["key"] for c in calls] == ["val/video/v2v_self", "val/video/i2v"]
    assert calls[0]["videos"] == [str(step / f"{k}.mp4") for k in keys] and calls[0]["step"] == 5
    assert calls[0]["caption"] == keys
