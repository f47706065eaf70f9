"""Collaborative sampling: the edge/device split of a deterministic DDIM chain equals full local sampling."""

import pytest
import torch

from edgegen.config import ConfigError
from edgegen.gdm.ddpm import ddim_sample, make_schedule
from edgegen.gdm.denoisers import ResidualMLP
from edgegen.gdm.sampling import (
    collaborative_sample,
    compute_split,
    device_complete,
    displacement,
    edge_denoise,
    local_sample,
    split_timesteps,
)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = ResidualMLP(64, 32, 2).eval()
    for p in model.parameters():  # non-trivial weights (the zero-initialised layers would make ε̂ trivial)
        p.data.add_(0.05 * torch.randn_like(p))
    return model, make_schedule(200, "cosine")


def test_split_timesteps_counts_and_handover():
    edge, device = split_timesteps(1000, 10, 3)
    assert edge[0] == 999 and device[-1] == -1
    assert edge[-1] == device[0]  # the hand-over timestep
    assert len(edge) - 1 == 3 and len(device) - 1 == 7
    edge0, device0 = split_timesteps(1000, 10, 0)
    assert edge0 == [999] and len(device0) == 11
    with pytest.raises(ConfigError, match="shared_steps"):
        split_timesteps(1000, 10, 11)


def test_collaborative_equals_local_sampling(setup):
    model, sched = setup
    x_T = torch.randn(12, 64, generator=torch.Generator().manual_seed(1))
    for shared in (0, 1, 4, 10):
        res = collaborative_sample(model, x_T, sched, 10, shared)
        assert torch.equal(res.x0, local_sample(model, x_T, sched, 10))  # same batch: bit-identical
        # each device alone after the batched edge part: equal up to batched-vs-single matmul round-off
        alone = collaborative_sample(model, x_T, sched, 10, shared, device_batch=1)
        singles = torch.cat([local_sample(model, x_T[i:i + 1], sched, 10) for i in range(len(x_T))])
        assert torch.allclose(alone.x0, singles, atol=1e-5)
    # and the reference itself is the core sampler (clip 1, clamped)
    reference = ddim_sample(model, x_T, sched, 10, clip_x0=1.0).clamp(-1, 1)
    assert torch.equal(local_sample(model, x_T, sched, 10), reference)


def test_edge_trajectory_and_displacement(setup):
    model, sched = setup
    x_T = torch.randn(5, 64, generator=torch.Generator().manual_seed(2))
    traj = edge_denoise(model, x_T, sched, 10, 4, return_trajectory=True)
    assert len(traj) == 5 and torch.equal(traj[0], x_T)
    assert torch.equal(traj[-1], edge_denoise(model, x_T, sched, 10, 4))
    d = displacement(x_T, traj[-1])
    assert d.shape == (5,) and torch.allclose(d, (x_T - traj[-1]).double().norm(dim=1))
    assert torch.equal(edge_denoise(model, x_T, sched, 10, 0), x_T)
    mid = traj[-1]
    assert torch.equal(device_complete(model, mid, sched, 10, 4), collaborative_sample(model, x_T, sched, 10, 4).x0)


def test_compute_split_hand_values():
    s = compute_split(batch=8, num_steps=50, shared_steps=20, params=1000)
    assert s["edge_nfe"] == 160 and s["edge_batched_passes"] == 20
    assert s["device_nfe_each"] == 30 and s["local_only_nfe_each"] == 50
    assert s["edge_share"] == pytest.approx(0.4)
    assert s["edge_flops"] == pytest.approx(160 * 2000) and s["device_flops_each"] == pytest.approx(30 * 2000)
    assert s["device_flops_saved_each"] == pytest.approx(20 * 2000)
    with pytest.raises(ConfigError):
        compute_split(8, 50, 51)
