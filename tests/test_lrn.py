"""Local response normalisation, paper section 3.3."""

import pytest
import torch
from torch import nn

from alexnet import LocalResponseNorm


def lrn_by_the_formula(a, k=2.0, n=5, alpha=1e-4, beta=0.75):
    """b[i] = a[i] / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a[j]^2) ** beta, as a loop."""
    channels = a.shape[1]
    b = torch.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        s = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        b[:, i] = a[:, i] / (k + alpha * s) ** beta
    return b


def test_lrn_equals_the_papers_formula_computed_by_a_loop():
    a = torch.randn(3, 11, 4, 5, dtype=torch.float64) * 40
    torch.testing.assert_close(LocalResponseNorm()(a), lrn_by_the_formula(a), rtol=1e-12, atol=1e-12)


def test_lrn_defaults_are_the_papers_constants():
    lrn = LocalResponseNorm()
    assert (lrn.k, lrn.size, lrn.alpha, lrn.beta) == (2.0, 5, 1e-4, 0.75)
    assert lrn.effective_alpha == 1e-4


@pytest.mark.parametrize("size", [5, 3, 4])
def test_lrn_equals_torch_local_response_norm_with_alpha_times_n(size):
    a = torch.randn(2, 13, 6, 6, dtype=torch.float64) * 30
    ours = LocalResponseNorm(size, alpha=1e-3, beta=0.75, k=2.0)(a)
    theirs = nn.LocalResponseNorm(size, alpha=1e-3 * size, beta=0.75, k=2.0)(a)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_code_scaling_divides_alpha_by_n_as_the_authors_code_and_torch():
    a = torch.randn(2, 8, 5, 5) * 30
    ours = LocalResponseNorm(scaling="code")(a)
    torch.testing.assert_close(ours, nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a))


def test_lrn_gradient_passes_gradcheck_in_float64():
    a = (torch.randn(2, 9, 3, 4, dtype=torch.float64) * 5).requires_grad_()
    assert torch.autograd.gradcheck(LocalResponseNorm(5, alpha=1e-2), (a,))
    assert torch.autograd.gradcheck(LocalResponseNorm(4, alpha=1e-2, groups=3), (a,))


def test_grouped_lrn_normalises_each_tower_within_its_own_maps():
    a = torch.randn(2, 12, 3, 3, dtype=torch.float64) * 30
    grouped = LocalResponseNorm(groups=2)(a)
    torch.testing.assert_close(grouped[:, :6], lrn_by_the_formula(a[:, :6]))
    torch.testing.assert_close(grouped[:, 6:], lrn_by_the_formula(a[:, 6:]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lrn_computes_in_float32_under_half_precision(dtype):
    # 5 * 300^2 = 450,000 overflows float16 (max 65,504): a half-precision sum would give inf.
    a = torch.full((1, 8, 2, 2), 300.0)
    expected = LocalResponseNorm(alpha=1e-2)(a)
    with torch.autocast("cpu", dtype=dtype):
        out = LocalResponseNorm(alpha=1e-2)(a.to(dtype))
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)


def test_lrn_rejects_channels_that_do_not_split_into_groups():
    with pytest.raises(ValueError, match="divisible by groups=2"):
        LocalResponseNorm(groups=2)(torch.zeros(1, 5, 2, 2))
    with pytest.raises(ValueError, match="scaling"):
        LocalResponseNorm(scaling="caffe")
