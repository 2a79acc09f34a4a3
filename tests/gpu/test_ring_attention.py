"""Ring and hybrid (Ulysses x ring) sequence parallelism with yunchang on CUDA: sharded equals whole."""

import pytest
import torch
import torch.multiprocessing as mp

from tests.parallel import sp_worker
from tests.ports import free_port

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize(("mode", "world"), [("ring", 2), ("hybrid", 4)])
def test_long_context_attention_matches_single_gpu(mode, world):
    if torch.cuda.device_count() < world:
        pytest.skip(f"{mode} over {world} ranks needs {world} CUDA devices (NCCL: one rank per device)")
    mp.spawn(sp_worker.run, args=(world, free_port(), world, 4, mode, "nccl"), nprocs=world, join=True)
