"""GPU tests reuse the training tests' generated shards."""

from tests.train.conftest import simple_shards  # noqa: F401
