"""What a user reads: metrics files from the first step, one progress line per interval in a log file, no noise."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.train.conftest import tiny_overrides
from trainer.progress import LineProgress, format_duration
from trainer.run_dir import metrics_files
from trainer.train import run

REPO = Path(__file__).resolve().parents[2]


def logged_steps(run_dir) -> list[int]:
    with open(metrics_files(run_dir)[-1]) as fh:
        return [int(r["step"]) for r in csv.DictReader(fh) if r.get("train/loss")]


def test_a_run_shorter_than_the_log_interval_logs_its_first_and_last_step(simple_shards, tmp_path):
    overrides = [o for o in tiny_overrides(simple_shards, tmp_path / "run", 3) if "log_every" not in o]
    result = run([*overrides, "loop.log_every_n_steps=10"])
    assert logged_steps(result.run_dir) == [0, 2]


def test_the_log_interval_is_kept_between_the_first_and_last_step(simple_shards, tmp_path):
    overrides = [o for o in tiny_overrides(simple_shards, tmp_path / "run", 7) if "log_every" not in o]
    result = run([*overrides, "loop.log_every_n_steps=3"])
    assert logged_steps(result.run_dir) == [0, 2, 5, 6]
    with open(metrics_files(result.run_dir)[-1]) as fh:
        rows = {int(r["step"]): r for r in csv.DictReader(fh) if r.get("train/loss")}
    assert rows[6]["train/step_time"] and rows[6]["train/loss_fm"]  # the last row is complete


def test_progress_in_a_log_file_is_one_line_per_interval(simple_shards, tmp_path):
    overrides = [o for o in tiny_overrides(simple_shards, tmp_path / "run", 5) if "progress_bar" not in o]
    log = tmp_path / "train.log"
    with open(log, "w") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "trainer.train", *overrides, "loop.progress_every_n_steps=2"],
            cwd=REPO,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "default"},  # show every warning that is not silenced
            timeout=600,
        )
    text = log.read_text()
    assert done.returncode == 0, text[-3000:]
    assert "\r" not in text
    steps = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("step ")]
    assert steps == ["step 1/5", "step 2/5", "step 4/5", "step 5/5"]
    line = next(line for line in text.splitlines() if line.startswith("step 4/5"))
    fields = line.split(" | ")
    assert fields[1].startswith("loss ") and fields[2].endswith(" s/step")
    assert fields[3].endswith(" samples/s") and fields[4].startswith("eta ")
    # Warnings nobody can act on are silenced where they start.
    assert "LeafSpec" not in text and "Tip:" not in text


def test_line_progress_counts_every_replica_and_prints_at_the_interval(capsys):
    class Trainer:
        is_global_zero, world_size, max_steps, accumulate_grad_batches = True, 2, 100, 1
        global_step = 0
        callback_metrics = {"train/loss": 0.5}

    trainer, progress = Trainer(), LineProgress(every_n_steps=10, every_s=1e9)
    progress.on_train_start(trainer, None)
    for step in range(1, 22):
        trainer.global_step = step
        progress.on_train_batch_end(trainer, None, None, {"keys": ["a", "b"]}, step)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["step 1/100", "step 10/100", "step 20/100"]
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05"
