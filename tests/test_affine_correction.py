"""The whole-pair affine correction: its least-squares fit, the composition of matrices, the network's contract."""
import pytest
import torch

from bsr.global_stage import affine_field, compose_affine
from bsr.networks.affine_correction import AffineCorrection, weighted_affine_fit
from bsr.warp import compose, identity_grid


def _matrix(a=(1.01, 0.02, 1.5, -0.01, 0.99, -2.0)):
    return torch.tensor(a, dtype=torch.float64).view(1, 2, 3)


@pytest.mark.parametrize("seed", range(5))
def test_fit_recovers_an_affine_field_under_any_weights(seed):
    g = torch.Generator().manual_seed(seed)
    h, w = 30, 50
    m = _matrix() + 0.01 * torch.randn(1, 2, 3, generator=g, dtype=torch.float64)
    pos = identity_grid(h, w, dtype=torch.float64).reshape(1, 2, -1)
    disp = affine_field(m, h, w, dtype=torch.float64).reshape(1, 2, -1)
    wt = torch.rand(1, h * w, generator=g, dtype=torch.float64)
    assert torch.allclose(weighted_affine_fit(pos, disp, wt, (h, w)), m, atol=1e-7)


def test_fit_ignores_points_of_zero_weight():
    h, w = 20, 20
    pos = identity_grid(h, w, dtype=torch.float64).reshape(1, 2, -1)
    disp = affine_field(_matrix(), h, w, dtype=torch.float64).reshape(1, 2, -1).clone()
    wt = torch.ones(1, h * w, dtype=torch.float64)
    disp[:, :, :50] += 30.0            # outliers ...
    wt[:, :50] = 0.0                   # ... without weight
    assert torch.allclose(weighted_affine_fit(pos, disp, wt, (h, w)), _matrix(), atol=1e-7)


def test_ridge_pulls_the_linear_part_towards_the_identity():
    h, w = 20, 30
    pos = identity_grid(h, w, dtype=torch.float64).reshape(1, 2, -1)
    disp = affine_field(_matrix(), h, w, dtype=torch.float64).reshape(1, 2, -1)
    wt = torch.ones(1, h * w, dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    free = (weighted_affine_fit(pos, disp, wt, (h, w))[0, :, :2] - eye).abs().sum()
    tied = (weighted_affine_fit(pos, disp, wt, (h, w), ridge=1.0)[0, :, :2] - eye).abs().sum()
    assert tied < 0.7 * free


def test_compose_affine_is_the_composition_of_the_two_fields():
    h, w = 24, 32
    a, b = _matrix(), _matrix((0.99, -0.01, -0.7, 0.015, 1.02, 0.4))
    expected = compose(affine_field(a, h, w, dtype=torch.float64), affine_field(b, h, w, dtype=torch.float64))
    got = affine_field(compose_affine(a, b), h, w, dtype=torch.float64)
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))   # bilinear sampling is exact inside
    assert torch.allclose(got[inner], expected[inner], atol=1e-6)


def test_untrained_network_leaves_the_global_stage_and_trains_through_the_fit():
    torch.manual_seed(0)
    net = AffineCorrection(channels=4, radius=2, work_side=48)
    ir, vis = torch.rand(2, 1, 40, 60), torch.rand(2, 1, 40, 60)
    m = net(ir, vis)
    assert m.shape == (2, 2, 3)
    assert torch.equal(m, torch.eye(2, 3).expand(2, -1, -1))
    m.sum().backward()
    assert net.gain.grad is not None and net.gain.grad != 0
    net.gain.data.fill_(1.0)
    net.zero_grad()
    net(ir, vis).pow(2).sum().backward()
    assert net.enc_ir[0].weight.grad.abs().sum() > 0 and net.conf[0].weight.grad.abs().sum() > 0


def test_network_refuses_mismatched_inputs():
    net = AffineCorrection(channels=4, radius=1, work_side=32)
    with pytest.raises(ValueError, match="one shape"):
        net(torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 24))
