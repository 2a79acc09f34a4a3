"""RequeueOnSignal: a warning signal reaching the ranks at different moments (or only one of them) ends
in one checkpoint at a step boundary every rank agrees on, a requeue request, and a clean exit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.ports import free_port
from trainer.run_dir import REQUEUE_REQUEST

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("requeue_worker.py")
RUNNING_AT = 20  # the step at which the worker writes its pid files (requeue_worker.RUNNING_AT)


@pytest.mark.slow
@pytest.mark.parametrize("signalled", [(0,), (1,), (0, 1)], ids=["rank0", "rank1", "both-skewed"])
def test_signal_ends_in_one_consistent_checkpoint(tmp_path, signalled):
    env = {
        **os.environ,
        "MASTER_PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "SLURM_JOB_ID": "4242",
    }
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while not all((tmp_path / f"pid.{r}").exists() for r in (0, 1)):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()  # before reading: its output ends only when it does
                pytest.fail(f"the workers never reached step {RUNNING_AT}: {proc.communicate()[0].decode()[-3000:]}")
            time.sleep(0.1)
        for i, rank in enumerate(signalled):
            if i:
                time.sleep(0.013)  # the second rank hears it one partial step later
            os.kill(int((tmp_path / f"pid.{rank}").read_text()), signal.SIGUSR1)
        assert proc.wait(timeout=60) == 0, proc.stdout.read().decode()[-3000:]
        # proc is rank 0; Lightning started rank 1 as its child and does not wait for it on exit, so rank 1
        # may still be writing its result when rank 0 is gone
        deadline = time.monotonic() + 60
        while not (tmp_path / "stopped.1.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
    results = [json.loads((tmp_path / f"stopped.{r}.json").read_text()) for r in (0, 1)]
    step = results[0]["saved_step"]
    assert step is not None and all(r["saved_step"] == step == r["global_step"] == r["position"] for r in results)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == step and ckpt["positions"] == [step, step]  # one step boundary on every rank
    assert (tmp_path / REQUEUE_REQUEST).read_text() == "4242\n"
