"""Ulysses sequence parallelism over real gloo process groups: sharded DiT equals the whole DiT."""

import pytest
import torch.multiprocessing as mp

from tests.parallel import sp_worker
from tests.ports import free_port


@pytest.mark.parametrize(
    ("world", "sp_size", "heads"),
    [
        (2, 2, 2),  # one sequence group, one head per rank
        (4, 4, 4),  # four shards of 21 tokens (padded to 24)
        (4, 2, 4),  # two data-parallel groups of two ranks, two heads per rank
    ],
)
def test_ulysses_forward_and_gradients_equal_single_process(world, sp_size, heads):
    mp.spawn(sp_worker.run, args=(world, free_port(), sp_size, heads, "ulysses", "gloo"), nprocs=world, join=True)
