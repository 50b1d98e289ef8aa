"""Learning-rate schedules: the paper's plateau rule and the documented alternatives."""

import math

import pytest

from alexnet.train.optim import CosineWarmup, Krizhevsky2012, Plateau, Step, make_schedule
from alexnet.train.config import TrainConfig


def test_plateau_divides_by_ten_after_patience_epochs_without_improvement_at_most_three_times():
    s = Plateau(0.01, patience=2, max_reductions=3)
    errors = [50, 40, 41, 40.5,  # two epochs without beating 40: first reduction
              39, 39.5, 39.2,    # second
              38, 38, 38,        # third (equal is not better)
              38, 38, 38, 38]    # no fourth
    lrs = []
    for e in errors:
        s.end_epoch(e)
        lrs.append(s.lr(0, 0.5))
    expected = [0.01] * 3 + [1e-3] * 3 + [1e-4] * 3 + [1e-5] * 5
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert s.reductions == 3


def test_plateau_state_round_trips_mid_count():
    s = Plateau(0.01, patience=3)
    for e in (10, 11, 12):
        s.end_epoch(e)
    t = Plateau(0.01, patience=3)
    t.load_state_dict(s.state_dict())
    t.end_epoch(13)
    assert t.lr(0, 0) == pytest.approx(0.001)


def test_krizhevsky2012_is_the_recorded_run():
    s = Krizhevsky2012(0.01)
    assert [s.lr(e, 0.5) for e in (0, 22, 23, 48, 49, 93)] == pytest.approx(
        [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])


def test_step_divides_every_n_epochs():
    s = Step(0.1, every=30)
    assert [s.lr(e, 0) for e in (0, 29, 30, 60, 89)] == pytest.approx([0.1, 0.1, 0.01, 0.001, 0.001])


def test_cosine_warms_up_linearly_then_decays_to_zero():
    s = CosineWarmup(0.02, warmup=2, epochs=10)
    assert s.lr(0, 0.5) == pytest.approx(0.005)
    assert s.lr(1, 1.0) == pytest.approx(0.02)
    assert s.lr(5, 1.0) == pytest.approx(0.5 * 0.02 * (1 + math.cos(math.pi * 4 / 8)))
    assert s.lr(9, 1.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name,cls", [("plateau", Plateau), ("step", Step), ("cosine", CosineWarmup),
                                      ("krizhevsky2012", Krizhevsky2012)])
def test_make_schedule_by_name(name, cls):
    assert isinstance(make_schedule(TrainConfig(schedule=name)), cls)
