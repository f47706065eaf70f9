"""Unit tests for edgegen.fedtune.lora against hand-made matrices and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from edgegen.fedtune import lora

T = torch.float64


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=T)


# Two clients on a 2×2 layer: client 1 has rank 1, client 2 rank 2; weights 1:3 → 0.25, 0.75.
B1, A1 = t([[1], [2]]), t([[3, 4]])
B2, A2 = t([[1, 0], [0, 1]]), t([[1, 2], [3, 4]])
BS, AS, W = [B1, B2], [A1, A2], [1.0, 3.0]
# Σ w B A = 0.25·[[3, 4], [6, 8]] + 0.75·[[1, 2], [3, 4]]
IDEAL = t([[1.5, 2.5], [3.75, 5.0]])


# ----------------------------------------------------------------------------- padding and truncation


def test_zero_pad_and_truncate_round_trip() -> None:
    B_pad, A_pad = lora.zero_pad(B1, A1, 3)
    assert torch.equal(B_pad, t([[1, 0, 0], [2, 0, 0]]))
    assert torch.equal(A_pad, t([[3, 4], [0, 0], [0, 0]]))
    assert torch.equal(B_pad @ A_pad, B1 @ A1)  # padding does not change the update
    B_back, A_back = lora.truncate(B_pad, A_pad, 1)
    assert torch.equal(B_back, B1) and torch.equal(A_back, A1)
    B_back[0, 0] = 99.0  # truncate returns copies
    assert B_pad[0, 0] == 1.0


def test_padding_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="r_max must be >= the factors' rank 2"):
        lora.zero_pad(B2, A2, 1)
    with pytest.raises(ValueError, match="B and A ranks differ"):
        lora.zero_pad(B1, A2, 2)
    with pytest.raises(ValueError, match="B must be 2-D"):
        lora.zero_pad(torch.ones(3), A1, 2)
    with pytest.raises(ValueError, match="r must be <= the factors' rank 1"):
        lora.truncate(B1, A1, 2)
    with pytest.raises(ValueError, match="r must be an integer >= 1"):
        lora.truncate(B2, A2, 0)


# ----------------------------------------------------------------------------- weights


def test_data_size_weights_are_normalised() -> None:
    w = lora.data_size_weights([10, 30, 60])
    assert torch.allclose(w, torch.tensor([0.1, 0.3, 0.6], dtype=T))
    assert w.sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_samples must be finite and >= 0"):
        lora.data_size_weights([3, -1])
    with pytest.raises(ValueError, match="num_samples must have a positive sum"):
        lora.data_size_weights([0, 0])


def test_frobenius_weights_proportional_to_norms() -> None:
    # ‖[[3, 4], [0, 0]]‖_F = 5 and ‖[[0, 0], [0, 15]]‖_F = 15 → weights 5/20, 15/20.
    Bs = [t([[1], [0]]), t([[1, 0], [0, 1]])]
    As = [t([[3, 4]]), t([[0, 0], [0, 15]])]
    assert torch.allclose(lora.frobenius_weights(Bs, As), torch.tensor([0.25, 0.75], dtype=T))
    zero = [torch.zeros(2, 1, dtype=T), torch.zeros(2, 2, dtype=T)]
    assert torch.allclose(lora.frobenius_weights(zero, As), torch.tensor([0.5, 0.5], dtype=T))  # all-zero → uniform


# ----------------------------------------------------------------------------- aggregation


def test_zero_pad_aggregation_by_hand() -> None:
    B_bar, A_bar = lora.aggregate_zero_pad(BS, AS, W)
    # B̄ = 0.25·[[1, 0], [2, 0]] + 0.75·[[1, 0], [0, 1]],  Ā = 0.25·[[3, 4], [0, 0]] + 0.75·[[1, 2], [3, 4]]
    assert torch.allclose(B_bar, t([[1.0, 0.0], [0.5, 0.75]]))
    assert torch.allclose(A_bar, t([[1.5, 2.5], [2.25, 3.0]]))
    B_k, A_k = lora.truncate(B_bar, A_bar, 1)  # what the rank-1 client downloads
    assert torch.allclose(B_k, t([[1.0], [0.5]])) and torch.allclose(A_k, t([[1.5, 2.5]]))
    B_wide, A_wide = lora.aggregate_zero_pad(BS, AS, W, r_max=3)
    assert B_wide.shape == (2, 3) and A_wide.shape == (3, 2) and torch.all(B_wide[:, 2] == 0)
    with pytest.raises(ValueError, match="r_max must be >= the largest client rank 2"):
        lora.aggregate_zero_pad(BS, AS, W, r_max=1)


def test_slice_normalised_aggregation_by_hand() -> None:
    B_bar, A_bar = lora.aggregate_slice_normalised(BS, AS, W)
    # slice 0 is owned by both (weight 1): as zero-padding; slice 1 only by client 2 (weight 0.75): its own factors.
    assert torch.allclose(B_bar, t([[1.0, 0.0], [0.5, 1.0]]))
    assert torch.allclose(A_bar, t([[1.5, 2.5], [3.0, 4.0]]))
    # with equal ranks it is plain averaging
    B_eq, A_eq = lora.aggregate_slice_normalised([B2, 2 * B2], [A2, A2], [1, 1])
    assert torch.allclose(B_eq, 1.5 * B2) and torch.allclose(A_eq, A2)


def test_flora_stack_is_exact() -> None:
    B_stack, A_stack = lora.flora_stack(BS, AS, W)
    assert torch.equal(B_stack, t([[1, 1, 0], [2, 0, 1]]))
    assert torch.allclose(A_stack, t([[0.75, 1.0], [0.75, 1.5], [2.25, 3.0]]))
    assert torch.allclose(B_stack @ A_stack, IDEAL)
    assert lora.aggregation_error(BS, AS, W, B_stack, A_stack) == pytest.approx(0.0, abs=1e-12)
    gen = torch.Generator().manual_seed(0)
    ranks = [2, 4, 8]
    Bs = [torch.randn(12, r, generator=gen, dtype=T) for r in ranks]
    As = [torch.randn(r, 9, generator=gen, dtype=T) for r in ranks]
    w = [0.2, 0.5, 0.3]
    B_stack, A_stack = lora.flora_stack(Bs, As, w)
    assert B_stack.shape == (12, 14) and A_stack.shape == (14, 9)
    expected = sum(wk * (B @ A) for wk, B, A in zip(w, Bs, As, strict=True))
    assert torch.allclose(B_stack @ A_stack, expected)


def test_flexlora_equals_truncated_svd() -> None:
    gen = torch.Generator().manual_seed(1)
    ranks = [2, 3, 6]
    Bs = [torch.randn(10, r, generator=gen, dtype=T) for r in ranks]
    As = [torch.randn(r, 7, generator=gen, dtype=T) for r in ranks]
    w = lora.data_size_weights([100, 50, 50])
    delta = sum(wk * (B @ A) for wk, B, A in zip(w, Bs, As, strict=True))
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    out = lora.flexlora_redistribute(Bs, As, w, [1, 2, 4, 7])
    for r, (B, A) in zip([1, 2, 4, 7], out, strict=True):
        assert B.shape == (10, r) and A.shape == (r, 7)
        best = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r, :]
        assert torch.allclose(B @ A, best)
        tail = math.sqrt(float((S[r:] ** 2).sum()))  # Eckart–Young
        assert lora.aggregation_error(Bs, As, w, B, A) == pytest.approx(tail, abs=1e-10)
    assert lora.aggregation_error(Bs, As, w, *out[-1]) == pytest.approx(0.0, abs=1e-10)  # full rank is exact
    (B9, A9), = lora.flexlora_redistribute(Bs, As, w, [9])  # above min(d_out, d_in) = 7: exact, zero-padded
    assert B9.shape == (10, 9) and A9.shape == (9, 7)
    assert torch.all(B9[:, 7:] == 0) and torch.all(A9[7:, :] == 0)
    assert torch.allclose(B9 @ A9, delta)
    with pytest.raises(ValueError, match=r"ranks\[0\] must be an integer >= 1"):
        lora.flexlora_redistribute(Bs, As, w, [0])


def test_aggregation_error_zero_for_identical_equal_rank_clients() -> None:
    B_bar, A_bar = lora.aggregate_zero_pad([B2, B2, B2], [A2, A2, A2], [1, 2, 3])
    assert torch.equal(B_bar, B2) and torch.allclose(A_bar, A2)
    assert lora.aggregation_error([B2, B2, B2], [A2, A2, A2], [1, 2, 3], B_bar, A_bar) == pytest.approx(0.0, abs=1e-12)
    # heterogeneous: B̄Ā = [[1.5, 2.5], [2.4375, 3.5]] vs the ideal [[1.5, 2.5], [3.75, 5]]
    B_bar, A_bar = lora.aggregate_zero_pad(BS, AS, W)
    err = lora.aggregation_error(BS, AS, W, B_bar, A_bar)
    assert err == pytest.approx(math.sqrt(1.3125**2 + 1.5**2))
    assert err > 0


def test_aggregation_input_errors() -> None:
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        lora.aggregate_zero_pad(BS, AS, [1.0, -1.0])
    with pytest.raises(ValueError, match=r"weights must hold one entry per client \(2\)"):
        lora.aggregate_zero_pad(BS, AS, [1.0])
    with pytest.raises(ValueError, match=r"all clients must share \(d_out, d_in\)"):
        lora.aggregate_zero_pad([B1, torch.ones(3, 2, dtype=T)], AS, W)
    with pytest.raises(ValueError, match="Bs and As must have the same length"):
        lora.flora_stack(BS, [A1], W)
    with pytest.raises(ValueError, match="Bs and As must be floating-point"):
        lora.aggregate_zero_pad([torch.ones(2, 1, dtype=torch.long)], [torch.ones(1, 2, dtype=torch.long)], [1])
    with pytest.raises(ValueError, match="Bs must hold at least one client"):
        lora.aggregate_slice_normalised([], [], [])


# ----------------------------------------------------------------------------- payloads and scale


def test_payload_bytes() -> None:
    assert lora.lora_params(64, 32, 4) == 4 * 96
    assert lora.uplink_bytes([(64, 32)], 4) == 1536  # 4 · (64 + 32) · 4 bytes
    assert lora.uplink_bytes([(64, 32), (64, 32)], 4) == 3072
    assert lora.uplink_bytes([(64, 32)], 4, bytes_per_param=2) == 768
    assert lora.downlink_bytes_zero_pad([(64, 32)], 4) == 1536
    assert lora.downlink_bytes_flexlora([(64, 32)], 4) == 1536
    assert lora.downlink_bytes_flora([(64, 32)], [1, 2, 5]) == 8 * 96 * 4  # the whole stack, Σ r = 8
    with pytest.raises(ValueError, match="r must be an integer >= 1"):
        lora.uplink_bytes([(64, 32)], 0)
    with pytest.raises(ValueError, match="layer_dims must list at least one"):
        lora.uplink_bytes([], 4)
    with pytest.raises(ValueError, match=r"ranks\[1\] must be an integer >= 1"):
        lora.downlink_bytes_flora([(64, 32)], [2, 0])


def test_lora_scale_and_delta_weight() -> None:
    for r in (1, 4, 16):
        assert lora.lora_scale(r, r) == 1.0  # edgegen's lora_alpha = r
    assert lora.lora_scale(16, 8) == 2.0
    assert torch.equal(lora.delta_weight(B1, A1), t([[3, 4], [6, 8]]))
    assert torch.equal(lora.delta_weight(B1, A1, scale=0.5), t([[1.5, 2], [3, 4]]))
    with pytest.raises(ValueError, match="lora_alpha must be > 0"):
        lora.lora_scale(0, 4)
