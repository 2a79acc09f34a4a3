"""Contrastive negatives across data-parallel ranks (DESIGN §4): the pairing rule, its counts, and a real
2-rank gloo step at batch 1 whose loss equals Eq. 8 with the other rank's target as the negative."""

import pytest
import torch
import torch.multiprocessing as mp

from tests.parallel import negatives_worker
from tests.ports import free_port
from tests.train.shards import write_simple_shards
from trainer.parallel.mesh import single_process_mesh
from trainer.parallel.negatives import exchange_negatives, plan_negatives


def test_single_sample_ranks_pair_with_the_nearest_earlier_rank_of_their_grid():
    a, b = (3, 2, 2), (3, 1, 4)  # the same token count, another layout: never paired
    plan = plan_negatives([(1, *a), (1, *b), (1, *a), (2, *b), (1, *b)])
    # Rank 0 wraps round past ranks 4 and 3 to rank 2; rank 4 takes the first of rank 3's two samples.
    assert plan.partners == (2, 4, 0, None, 3)
    assert (plan.used, plan.missing) == (6, 0)


def test_counts_are_zero_only_when_no_sample_has_a_negative():
    # Alone at batch 1: nothing to pair with.
    assert (plan_negatives([(1, 3, 2, 2)]).used, plan_negatives([(1, 3, 2, 2)]).missing) == (0, 1)
    # Every rank at batch 1, each with its own grid.
    plan = plan_negatives([(1, 3, 2, 2), (1, 3, 1, 4), (1, 2, 2, 2)])
    assert (plan.used, plan.missing, plan.exchange) == (0, 3, False)
    # One rank with two samples pairs them in the batch; the single-sample rank of another grid is missing.
    plan = plan_negatives([(2, 3, 2, 2), (1, 2, 2, 2)])
    assert (plan.used, plan.missing, plan.exchange) == (2, 1, False)
    # A single-sample rank of the same grid as a two-sample rank takes that rank's first sample.
    plan = plan_negatives([(2, 3, 2, 2), (1, 3, 2, 2)])
    assert plan.partners == (None, 0) and (plan.used, plan.missing, plan.exchange) == (3, 0, True)


def test_one_process_uses_the_batch_or_reports_the_missing_negative():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 12, 4, generator=g)
    negatives, plan = exchange_negatives(target, (3, 2, 2), single_process_mesh())
    assert torch.equal(negatives, torch.roll(target, 1, 0)) and (plan.used, plan.missing) == (2, 0)
    negatives, plan = exchange_negatives(target[:1], (3, 2, 2), single_process_mesh())
    assert negatives is None and (plan.used, plan.missing) == (0, 1)
    with pytest.raises(ValueError, match="grid"):
        exchange_negatives(target, (3, 1, 2), single_process_mesh())


def test_exchanges_over_four_gloo_ranks_and_two_sequence_groups():
    mp.spawn(negatives_worker.exchanges, args=(4, free_port()), nprocs=4, join=True)


@pytest.mark.slow
def test_two_gloo_ranks_at_batch_one_train_against_each_others_target(tmp_path):
    write_simple_shards(tmp_path / "shards", num_clips=2, per_shard=1)
    shards = f"{tmp_path}/shards/*.tar"
    mp.spawn(negatives_worker.module_step, args=(2, free_port(), shards, str(tmp_path / "run")), nprocs=2, join=True)
