"""Paper section 5's update rule: v <- 0.9 v - 0.0005 eps w - eps g; w <- w + v."""

import numpy as np
import pytest
import torch
from torch import nn

from alexnet.train.config import TrainConfig
from alexnet.train.optim import (PaperSGD, Schedule, fast_sgd, make_optimizer, make_schedule, paper_sgd_step_,
                                 parameter_groups)


def _quadratic_grads(w: np.ndarray) -> np.ndarray:
    return 2 * w - 1  # gradient of sum(w^2 - w)


def test_paper_sgd_follows_the_formula_step_by_step_across_a_rate_change():
    rng = np.random.default_rng(0)
    w_ref = rng.normal(size=5)
    v_ref = np.zeros(5)
    w = torch.tensor(w_ref.copy(), requires_grad=True)
    opt = PaperSGD([w], lr=0.01, momentum=0.9, weight_decay=0.0005)
    for step in range(12):
        eps = 0.01 if step < 6 else 0.001
        Schedule(eps).set(opt, epoch=0, progress=0.0)
        opt.zero_grad()
        (w ** 2 - w).sum().backward()
        opt.step()
        v_ref = 0.9 * v_ref - 0.0005 * eps * w_ref - eps * _quadratic_grads(w_ref)
        w_ref = w_ref + v_ref
        np.testing.assert_allclose(w.detach().numpy(), w_ref, rtol=0, atol=1e-15)


def _run(optimizer_cls, lrs):
    torch.manual_seed(0)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    opt = optimizer_cls([w], lr=lrs[0], momentum=0.9, weight_decay=0.0005)
    out = []
    for lr in lrs:
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        (w ** 2 - w).sum().backward()
        opt.step()
        out.append(w.detach().clone())
    return out


def test_paper_sgd_equals_torch_sgd_at_constant_rate_and_differs_right_after_a_change():
    lrs = [0.01] * 5 + [0.001] * 3
    paper, torch_sgd = _run(PaperSGD, lrs), _run(torch.optim.SGD, lrs)
    for a, b in zip(paper[:5], torch_sgd[:5]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # torch's velocity (gradient units) is rescaled by the new rate at once; the paper's is not.
    step_paper, step_torch = paper[5] - paper[4], torch_sgd[5] - torch_sgd[4]
    assert not torch.allclose(step_paper, step_torch, rtol=1e-3)
    assert step_paper.abs().sum() > 5 * step_torch.abs().sum()


def test_bias_groups_carry_the_authors_rate_multiplier_and_no_decay():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    groups = parameter_groups(net, TrainConfig(bias_lr_mult=2.0, bias_no_decay=True))
    weights, biases = groups
    assert [p.shape for p in weights["params"]] == [(4, 3), (2, 4)]
    assert [p.shape for p in biases["params"]] == [(4,), (2,)]
    assert biases["weight_decay"] == 0.0 and weights["weight_decay"] == 0.0005
    opt = make_optimizer(net, TrainConfig(bias_lr_mult=2.0, bias_no_decay=True))
    Schedule(0.003).set(opt, epoch=0, progress=0.0)
    assert [g["lr"] for g in opt.param_groups] == [0.003, 0.006]


def test_paper_defaults_make_one_group_of_the_paper_optimizer():
    net = nn.Linear(3, 4)
    opt = make_optimizer(net, TrainConfig())
    assert make_schedule(TrainConfig()).set(opt, epoch=0, progress=0.1) == 0.01  # the rate's one source
    assert isinstance(opt, PaperSGD) and len(opt.param_groups) == 1
    g = opt.param_groups[0]
    assert (g["lr"], g["momentum"], g["weight_decay"]) == (0.01, 0.9, 0.0005)
    assert isinstance(make_optimizer(net, TrainConfig(optimizer="torch-sgd")), torch.optim.SGD)


def test_paper_sgd_state_round_trips():
    w = torch.ones(3, requires_grad=True)
    opt = PaperSGD([w])
    w.sum().backward()
    opt.step()
    fresh = PaperSGD([w])
    fresh.load_state_dict(opt.state_dict())
    assert torch.equal(fresh.state[w]["velocity"], opt.state[w]["velocity"])


def test_negative_settings_are_refused():
    with pytest.raises(ValueError, match="lr"):
        PaperSGD([torch.ones(1, requires_grad=True)], lr=-1)


def test_fc8_rate_multiplier_applies_to_the_output_layer_only_and_combines_with_the_bias_rate():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    config = TrainConfig(fc8_lr_mult=0.05, bias_lr_mult=2.0)
    opt = make_optimizer(net, config)
    make_schedule(config).set(opt, epoch=0, progress=0.1)
    lrs = {tuple(p.shape): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs == {(4, 3): 0.01, (4,): 0.02, (2, 4): pytest.approx(0.0005), (2,): pytest.approx(0.001)}
    Schedule(0.001).set(opt, epoch=0, progress=0.0)  # a schedule's reduction keeps the multipliers
    lrs = {tuple(p.shape): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[(2, 4)] == pytest.approx(0.00005) and lrs[(4, 3)] == 0.001


def test_the_quick_preset_slows_only_fc8():
    from alexnet.train.config import resolve

    quick, full = resolve({}, {"preset": "quick"}, "test"), resolve({}, {"preset": "full"}, "test")
    assert quick.batch_size == 32 and full.batch_size == 128 and full.lr == 0.01  # section 5
    assert quick.lr == full.lr * quick.batch_size / full.batch_size  # the paper's rate per image
    assert quick.fc8_lr_mult == 0.2 and full.fc8_lr_mult == 1.0


class _HostCheckedPaperSGD(PaperSGD):
    """PaperSGD left to GradScaler's default path: unscale, read the inf flag on the host, step."""

    _step_supports_amp_scaling = False


def _scaled_steps(optimizer_class, bad_step=None, steps=4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = optimizer_class(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
    x, y = torch.randn(8, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    history = []
    for step in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss * (float("inf") if step == bad_step else 1.0)).backward()
        scaler.step(opt)
        scaler.update()
        history.append(([p.detach().clone() for p in model.parameters()],
                        [opt.state[p]["velocity"].clone() if p in opt.state else torch.zeros_like(p)
                         for p in model.parameters()],  # no state yet: velocity zero
                        scaler.get_scale()))
    return history


@pytest.mark.parametrize("bad_step", [None, 0, 2])
def test_loss_scaling_steps_on_the_device_equal_the_scalers_host_checked_steps(bad_step):
    on_device, host_checked = _scaled_steps(PaperSGD, bad_step), _scaled_steps(_HostCheckedPaperSGD, bad_step)
    for (w, v, scale), (w_ref, v_ref, scale_ref) in zip(on_device, host_checked):
        assert scale == scale_ref
        for a, b in zip(w + v, w_ref + v_ref):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    if bad_step is not None:  # the skipped step changed nothing, and the scale was halved
        before = on_device[bad_step - 1][0] if bad_step else None
        if before is not None:
            assert all(torch.equal(a, b) for a, b in zip(before, on_device[bad_step][0]))
        assert on_device[bad_step][2] < (on_device[bad_step - 1][2] if bad_step else 1024.0)


def test_loss_scaled_paper_step_reads_nothing_on_the_host(monkeypatch):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = PaperSGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    scaler.scale(model(torch.randn(3, 4)).sum()).backward()

    def no_host_reads(*args, **kwargs):
        raise AssertionError("a device value was read on the host during the step")

    for name in ("item", "__bool__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, no_host_reads)
    before = model.weight.detach().clone()
    scaler.step(opt)
    monkeypatch.undo()
    assert not torch.equal(before, model.weight)


def test_paper_sgd_foreach_step_is_the_papers_update_rule():
    torch.manual_seed(2)
    weights = [torch.randn(4, 3), torch.randn(5)]
    grads = [torch.randn(4, 3), torch.randn(5)]
    velocities = [torch.randn(4, 3), torch.randn(5)]
    lr, momentum, decay = 0.01, 0.9, 0.0005
    expected_v = [momentum * v - decay * lr * w - lr * g for w, g, v in zip(weights, grads, velocities)]
    expected_w = [w + v for w, v in zip(weights, expected_v)]
    paper_sgd_step_(weights, grads, velocities, lr, momentum, decay)
    for got, want in zip(velocities + weights, expected_v + expected_w):
        torch.testing.assert_close(got, want)


def test_fast_sgd_falls_back_to_foreach_with_every_parameter_of_a_generator(monkeypatch):
    plain = torch.optim.SGD

    def no_fused(params, fused=None, **kw):
        if fused:
            next(iter(params))  # fails after reading, as torch does when it checks the first tensor
            raise RuntimeError("fused not supported")
        return plain(params, **kw)

    monkeypatch.setattr(torch.optim, "SGD", no_fused)
    model = nn.Linear(4, 2)
    opt = fast_sgd(model.parameters(), lr=0.1)
    assert opt.defaults["foreach"] and sum(len(g["params"]) for g in opt.param_groups) == 2


def test_fast_sgd_takes_the_same_steps_as_default_sgd():
    torch.manual_seed(3)
    start = [torch.randn(6, 4), torch.randn(4)]
    runs = []
    for make in (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.0005),
                 lambda p: fast_sgd(p, lr=0.1)):
        params = [nn.Parameter(t.clone()) for t in start]
        opt = make(params)
        for step in range(3):
            for i, p in enumerate(params):
                p.grad = torch.full_like(p, 0.1 * (step + 1 + i))
            opt.step()
        runs.append(params)
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b)
