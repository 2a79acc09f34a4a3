"""Fixtures of the sampler tests: tiny shards and a tiny training module on them."""

import pytest

from tests.train.shards import write_simple_shards


@pytest.fixture(scope="session")
def eval_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_shards")
    write_simple_shards(out, num_clips=4, per_shard=2)
    return f"{out}/*.tar"
