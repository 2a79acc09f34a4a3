"""FSDP2 on CPU (gloo, 2 processes): Muon and AdamW steps on sharded DTensor weights equal unsharded ones."""

import pytest
import torch
import torch.multiprocessing as mp

from tests.parallel import fsdp_worker
from tests.parallel.updates import assert_same_updates, single_threaded
from tests.ports import free_port


@pytest.mark.slow
def test_muon_adamw_update_under_fsdp_equals_the_unsharded_update(tmp_path):
    mp.spawn(fsdp_worker.run, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    res = {**torch.load(tmp_path / "result.pt", weights_only=True), **single_threaded(fsdp_worker.unsharded_reference)}
    assert_same_updates(res)
