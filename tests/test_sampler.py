from collections import Counter

import numpy as np
import pytest

from alexnet.data.sampler import BatchSampler, EpochSampler, epoch_order, rank_indices


def all_ranks(n, world_size, **options):
    return [rank_indices(n, rank=r, world_size=world_size, **options) for r in range(world_size)]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 10, 11, 12, 13])
def test_evaluation_split_reads_every_sample_exactly_once(n, world_size):
    parts = all_ranks(n, world_size, shuffle=False, pad=False)
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [10, 11, 13])
def test_training_split_gives_every_rank_the_same_number_and_covers_every_sample(n, world_size):
    parts = all_ranks(n, world_size, seed=5, epoch=2, shuffle=True, pad=True)
    assert len({len(p) for p in parts}) == 1
    counts = Counter(np.concatenate(parts).tolist())
    assert set(counts) == set(range(n))
    repeated = sum(c - 1 for c in counts.values())
    assert repeated == len(parts[0]) * world_size - n < world_size


def test_each_epoch_is_a_fresh_shuffle_determined_by_seed_and_epoch():
    a0, a1 = (rank_indices(100, seed=1, epoch=e) for e in (0, 1))
    assert sorted(a0.tolist()) == list(range(100)) and not np.array_equal(a0, a1)
    assert np.array_equal(a0, rank_indices(100, seed=1, epoch=0))
    assert not np.array_equal(a0, rank_indices(100, seed=2, epoch=0))


@pytest.mark.parametrize("world_size", [1, 3])
@pytest.mark.parametrize("start", [0, 6, 7, 29, 30, 31])
def test_resuming_at_a_position_yields_the_rest_of_the_same_epoch(world_size, start):
    """Positions count the global order over all ranks, dealt round-robin."""
    n = 29
    whole = all_ranks(n, world_size, seed=3, epoch=4)
    resumed = all_ranks(n, world_size, seed=3, epoch=4, start=start)
    global_order = np.stack(whole, axis=1).reshape(-1)  # position p -> rank p % world_size
    rest = np.concatenate(resumed)
    assert sorted(rest.tolist()) == sorted(global_order[start:].tolist())
    for r in range(world_size):
        assert np.array_equal(resumed[r], whole[r][len(whole[r]) - len(resumed[r]):])


def test_sampler_length_matches_what_it_yields():
    for start in (0, 5, 40):
        for rank in range(3):
            s = EpochSampler(17, seed=0, epoch=1, rank=rank, world_size=3, start=start, limit=15)
            assert len(s) == len(list(s))


def test_limit_reads_a_prefix_of_the_shuffled_epoch_order():
    full = rank_indices(50, seed=9, epoch=1)
    assert np.array_equal(rank_indices(50, seed=9, epoch=1, limit=8), full[:8])
    assert np.array_equal(rank_indices(50, shuffle=False, limit=8), np.arange(8) * 50 // 8)


def test_batches_are_numpy_arrays_in_sampler_order():
    sampler = EpochSampler(10, seed=0)
    batches = list(BatchSampler(sampler, 4))
    assert [len(b) for b in batches] == [4, 4, 2] and all(b.dtype == np.int64 for b in batches)
    assert np.array_equal(np.concatenate(batches), sampler.indices())
    assert [len(b) for b in BatchSampler(sampler, 4, drop_last=True)] == [4, 4]
    assert len(BatchSampler(sampler, 4)) == 3 and len(BatchSampler(sampler, 4, True)) == 2


def test_bad_rank_is_refused():
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(10, rank=2, world_size=2)


def test_a_limited_unshuffled_epoch_spreads_over_the_whole_dataset():
    # prepared datasets are stored class by class: the first 200 of 500 would cover 4 classes of 10
    order = epoch_order(500, 0, 0, shuffle=False, limit=200)
    assert len(order) == 200 and len(set(order.tolist())) == 200
    assert set((order // 50).tolist()) == set(range(10))
    assert order.tolist() == sorted(order.tolist())
