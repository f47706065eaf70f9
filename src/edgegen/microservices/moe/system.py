"""The edge system: MoE experts as microservices on M heterogeneous devices (Edge-LAM; WDMoE, Xue et al. 2024).

The edge server (base station) runs embedding, attention and every layer's gate; the experts of each MoE layer
are microservices with ``replicas`` copies on the devices. Expert e of layer l lives on devices
``(e + l + r) mod M`` for r = 0..replicas−1 (primary first: a cyclic placement, so any ≤ replicas experts of a
layer can be served by distinct devices).

Per activated expert (call) on device d, with payload = hidden_size · activation_bits per token
(:mod:`edgegen.wireless`, OFDMA with an equal band share 1/M per device, 3GPP path loss, Rayleigh fading):
    send_s    = payload / rate_d(server_tx_power_w)     server → device, the token's hidden state
    compute_s = flops_per_token / flops_per_s_d          flops_per_s_d = speed_factor_d · (FLOP/s measured by
                                                         timing a real MixtralExperts FFN on this CPU)
    return_s  = payload / rate_d(device_tx_power_w)      device → server, the expert output
    energy_j  = κ f_d² · cycles  +  device_tx_power_w · return_s
                (cycles = flops / (FLOPs per cycle of this CPU), f_d = speed_factor_d · reference_cpu_freq_hz)
Layer latency = max over the layer's k parallel calls; token latency = Σ over layers (the server's attention and
gate time is the same for every policy and is not included).

Queues: device d serves S_d expert calls per slot (the MoE share of its compute); S_d ∝ speed_factor_d and
Σ_d S_d = (mean calls per slot) / load, so ``load`` is the offered load of the whole system (> 1: overload).
Arrivals: a token arrives in a slot with probability ``token_arrival_prob``; ``token_source`` is
    ``iid``    a trace token drawn uniformly at random (i.i.d. over slots) and each device's fading power from the
               finite set ``fading_levels`` (equiprobable): the finite-state i.i.d. model of the bound check;
    ``trace``  the trace's tokens in order (sequences back to back, from a random start) and Rayleigh fading:
               temporally correlated, as a served stream would be.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from edgegen import wireless
from edgegen.config import ConfigError, check_range
from edgegen.microservices.moe.lyapunov import LayerSlot, enumerate_assignments


@dataclass(frozen=True)
class SystemConfig:
    """Edge devices, radio, expert size, queue service and arrivals."""

    device_speed_factors: tuple[float, ...] = (1.6, 1.3, 1.0, 1.0, 0.8, 0.7, 0.6, 0.5)
    """Compute speed of each device relative to this CPU (one thread); the number of devices M is its length."""
    device_distance_m: tuple[float, ...] = (150.0, 400.0, 100.0, 250.0, 300.0, 80.0, 200.0, 120.0)
    """Distance of each device from the base station (same length as device_speed_factors)."""
    replicas: int = 3
    """Devices holding a copy of each expert (≥ top_k so that every layer's calls fit on distinct devices)."""
    expert_hidden_size: int = 1024
    """Model width of the served experts (hidden-state payload and FFN FLOPs); the traced model is smaller."""
    expert_ffn_size: int = 3584
    """FFN width of each served expert (Mixtral's ratio 14336/4096 = 3.5)."""
    activation_bits: int = 16
    """Bits per hidden-state element on the air (fp16)."""
    total_bandwidth_hz: float = 10e6
    """System band, split equally (OFDMA) between the M devices."""
    server_tx_power_w: float = 1.0
    """Base-station transmit power (send of the hidden state)."""
    device_tx_power_w: float = 0.2
    """Device transmit power (return of the expert output), 23 dBm."""
    noise_psd_dbm_per_hz: float = -174.0
    """Thermal noise density."""
    reference_cpu_freq_hz: float = 2.4e9
    """Clock of this CPU, used to turn measured FLOP/s into FLOPs per cycle for the energy model."""
    kappa: float = 1e-28
    """Effective switched capacitance of the devices' processors (energy κ f² per cycle)."""
    energy_weight_s_per_j: float = 0.3
    """Cost per slot = latency_ms + energy_weight_s_per_j · device energy_mj (ms-equivalent; seconds of latency one
    joule of device energy is worth)."""
    token_arrival_prob: float = 0.9
    """Probability that a token arrives (needs its L MoE layers served) in a slot."""
    load: float = 0.85
    """Offered load: mean expert calls per slot / Σ_d S_d (> 1 overloads every policy)."""
    slot_ms: float = 100.0
    """Slot length (decision epoch); the scheduler's decision time per slot is compared with it."""
    fading_levels: tuple[float, ...] = (0.3, 1.7)
    """Small-scale fading power levels of the finite-state i.i.d. model (equiprobable, mean 1)."""

    @property
    def num_devices(self) -> int:
        return len(self.device_speed_factors)

    def validate(self, top_k: int | None = None) -> SystemConfig:
        m = self.num_devices
        check_range("system.num_devices (len of device_speed_factors)", m, 2, 256)
        if len(self.device_distance_m) != m:
            raise ConfigError(f"system.device_distance_m must have {m} entries (one per device), "
                              f"got {len(self.device_distance_m)}")
        for i, s in enumerate(self.device_speed_factors):
            check_range(f"system.device_speed_factors[{i}]", s, 1e-3, 1e3)
        for i, dist in enumerate(self.device_distance_m):
            check_range(f"system.device_distance_m[{i}]", dist, 1.0, 1e5)
        check_range("system.replicas", self.replicas, max(1, top_k or 1), m)
        check_range("system.expert_hidden_size", self.expert_hidden_size, 1, 65536)
        check_range("system.expert_ffn_size", self.expert_ffn_size, 1, 262144)
        check_range("system.activation_bits", self.activation_bits, 1, 64)
        check_range("system.total_bandwidth_hz", self.total_bandwidth_hz, 1e3, 1e11)
        check_range("system.server_tx_power_w", self.server_tx_power_w, 1e-6, 1e3)
        check_range("system.device_tx_power_w", self.device_tx_power_w, 1e-6, 1e3)
        check_range("system.noise_psd_dbm_per_hz", self.noise_psd_dbm_per_hz, -250.0, 0.0)
        check_range("system.reference_cpu_freq_hz", self.reference_cpu_freq_hz, 1e6, 1e11)
        check_range("system.kappa", self.kappa, 0.0, 1e-20)
        check_range("system.energy_weight_s_per_j", self.energy_weight_s_per_j, 0.0, 1e6)
        check_range("system.token_arrival_prob", self.token_arrival_prob, 1e-6, 1.0)
        check_range("system.load", self.load, 1e-3, 100.0)
        check_range("system.slot_ms", self.slot_ms, 1e-3, 1e7)
        if not self.fading_levels:
            raise ConfigError("system.fading_levels must hold at least one level")
        for i, g in enumerate(self.fading_levels):
            check_range(f"system.fading_levels[{i}]", g, 1e-6, 1e3)
        return self


def placement(num_layers: int, num_experts: int, num_devices: int, replicas: int) -> np.ndarray:
    """``(L, E, R)`` device ids: expert e of layer l on devices (e + l + r) mod M, r = 0..R−1 (primary first)."""
    e = np.arange(num_experts)[None, :, None]
    layer = np.arange(num_layers)[:, None, None]
    r = np.arange(replicas)[None, None, :]
    return (e + layer + r) % num_devices


class EdgeSystem:
    """Devices, placement and the per-call latency / energy of the edge MoE system (all arrays per device)."""

    def __init__(self, cfg: SystemConfig, calibration: dict, num_layers: int, num_experts: int, top_k: int):
        cfg.validate(top_k)
        self.cfg, self.num_layers, self.num_experts, self.top_k = cfg, num_layers, num_experts, top_k
        m = cfg.num_devices
        self.replicas = placement(num_layers, num_experts, m, cfg.replicas)
        self.holds = np.zeros((num_layers, num_experts, m), dtype=bool)  # holds[l, e, d]
        np.put_along_axis(self.holds, self.replicas, True, axis=-1)
        speed = np.asarray(cfg.device_speed_factors, float)
        self.flops_per_call = 2.0 * 3 * cfg.expert_hidden_size * cfg.expert_ffn_size
        cpu_flops = float(calibration["flops_per_s"])  # timed at this expert size (traces.calibrate_expert_ffn)
        self.flops_per_s = speed * cpu_flops
        self.freq_hz = speed * cfg.reference_cpu_freq_hz
        flops_per_cycle = cpu_flops / cfg.reference_cpu_freq_hz
        cycles = self.flops_per_call / flops_per_cycle
        self.compute_s = np.asarray(wireless.compute_time_s(self.flops_per_call, self.flops_per_s))
        self.compute_energy_j = np.asarray(wireless.compute_energy_j(cycles, self.freq_hz, cfg.kappa))
        self.payload_bits = float(cfg.expert_hidden_size * cfg.activation_bits)
        self.distance_km = np.asarray(cfg.device_distance_m, float) / 1e3
        self.mean_calls_per_slot = cfg.token_arrival_prob * num_layers * top_k
        self.service = self.mean_calls_per_slot / cfg.load * speed / speed.sum()
        # a device serves at most one call per layer: A_d ≤ number of layers where it holds some expert
        self.max_arrivals = self.holds.any(axis=1).sum(axis=0).astype(float)

    # ------------------------------------------------------------------ radio

    def comm(self, fading_power: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(send_s, return_s, transmit energy_j), each shaped like ``fading_power`` (…, M)."""
        cfg = self.cfg
        large_scale = np.power(10.0, -np.asarray(wireless.path_loss_db(self.distance_km)) / 10.0)
        gain = large_scale * np.asarray(fading_power, float)
        share = 1.0 / cfg.num_devices
        down = wireless.ofdma_rate_bps(share, cfg.total_bandwidth_hz, cfg.server_tx_power_w, gain,
                                       cfg.noise_psd_dbm_per_hz)
        up = wireless.ofdma_rate_bps(share, cfg.total_bandwidth_hz, cfg.device_tx_power_w, gain,
                                     cfg.noise_psd_dbm_per_hz)
        send_s = np.asarray(wireless.transmit_time_s(self.payload_bits, down))
        return_s = np.asarray(wireless.transmit_time_s(self.payload_bits, up))
        return send_s, return_s, np.asarray(wireless.transmit_energy_j(cfg.device_tx_power_w, return_s))

    def call_costs(self, fading_power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-device latency_ms and energy_mj of one call (one token) given the devices' fading powers."""
        send_s, return_s, tx_j = self.comm(fading_power)
        return 1e3 * (send_s + self.compute_s + return_s), 1e3 * (self.compute_energy_j + tx_j)

    def layer_slots(self, token_experts: np.ndarray, latency_ms: np.ndarray, energy_mj: np.ndarray
                    ) -> list[tuple[int, LayerSlot]]:
        """The :class:`LayerSlot` of every layer for one token whose top-k experts are ``token_experts`` (L, k)."""
        out = []
        for layer, experts in enumerate(np.asarray(token_experts)):
            experts = np.asarray(experts, np.int64)
            j = len(experts)
            out.append((layer, LayerSlot(experts, self.holds[layer, experts],
                                         np.broadcast_to(latency_ms, (j, len(latency_ms))),
                                         np.broadcast_to(energy_mj, (j, len(energy_mj))), np.ones(j))))
        return out

    # ------------------------------------------------------------------ finite-state i.i.d. model for the LP

    def lp_cases(self, experts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decision cases of the finite-state i.i.d. model for :func:`~lyapunov.stationary_lp`.

        A case is (layer l, the set of experts activated at l, the fading level of every device holding one of
        them); its probability is p_token · P_l(expert set) (empirical over ``experts``, the trace (N, L, k)) ·
        Π level probabilities. Devices outside the replica sets do not affect the layer's cost or arrivals, so
        conditioning on them is not needed (averaging a policy over them keeps every expectation). Actions are
        all maps of the calls to distinct replica devices. Returns (case_prob, action_case, action_cost,
        action_arrivals).
        """
        cfg = self.cfg
        levels = np.asarray(cfg.fading_levels, float)
        flat = np.sort(np.asarray(experts).reshape(-1, self.num_layers, self.top_k), axis=-1)
        case_prob, action_case, action_cost, action_arr = [], [], [], []
        m = cfg.num_devices
        for layer in range(self.num_layers):
            sets, counts = np.unique(flat[:, layer], axis=0, return_counts=True)
            for expert_set, count in zip(sets, counts, strict=True):
                allowed = self.holds[layer, expert_set]
                rel = np.flatnonzero(allowed.any(axis=0))
                actions = enumerate_assignments(allowed)
                p_set = cfg.token_arrival_prob * count / len(flat)
                for combo in itertools.product(range(len(levels)), repeat=len(rel)):
                    fading = np.ones(m)
                    fading[rel] = levels[list(combo)]
                    lat, en = self.call_costs(fading)
                    case = len(case_prob)
                    case_prob.append(p_set / len(levels) ** len(rel))
                    for action in actions:
                        devices = list(action)
                        action_case.append(case)
                        action_cost.append(lat[devices].max() + cfg.energy_weight_s_per_j * en[devices].sum())
                        arr = np.zeros(m)
                        arr[devices] += 1.0
                        action_arr.append(arr)
        return np.array(case_prob), np.array(action_case), np.array(action_cost), np.array(action_arr)
