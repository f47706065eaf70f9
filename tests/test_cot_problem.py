"""CoT deployment instances: hand-computed latency, capacity, literal-objective artefact, generator, JSON."""

import numpy as np
import pytest

from edgegen.config import ConfigError
from edgegen.microservices.cot.problem import (
    Instance,
    InstanceConfig,
    Tables,
    deployment_matrix,
    generate,
    is_feasible,
    literal_latency,
    load_instances,
    overflow_bytes,
    path_latency_s,
    save_instances,
)


def tiny() -> Instance:
    """2 steps, 2 devices; device 0 is the requester. Hand-checkable numbers."""
    rate = np.array([[np.inf, 10.0], [10.0, np.inf]])
    return Instance(compute_flop=np.array([4.0, 6.0]), memory_bytes=np.array([3.0, 2.0]), handoff_bits=np.array([20.0]),
                    input_bits=5.0, output_bits=1.0, speed_flops=np.array([1.0, 2.0]),
                    capacity_bytes=np.array([4.0, 5.0]), rate_bps=rate, source=0).validate()


def test_tables_by_hand():
    t = tiny().tables()
    np.testing.assert_allclose(t.comp, [[4.0, 2.0], [6.0, 3.0]])
    np.testing.assert_allclose(t.comm[0], [[0.0, 2.0], [2.0, 0.0]])
    np.testing.assert_allclose(t.inp, [0.0, 0.5])
    np.testing.assert_allclose(t.out, [0.0, 0.1])


@pytest.mark.parametrize("serve, latency", [((0, 0), 10.0), ((1, 1), 0.5 + 2 + 3 + 0.1), ((0, 1), 4 + 2 + 3 + 0.1),
                                            ((1, 0), 0.5 + 2 + 2 + 6)])
def test_path_latency_by_hand(serve, latency):
    assert path_latency_s(tiny().tables(), np.array(serve)) == pytest.approx(latency)


def test_capacity():
    t = tiny().tables()
    assert overflow_bytes(t, np.array([0, 0])) == pytest.approx(1.0)  # 3 + 2 > 4
    assert overflow_bytes(t, np.array([1, 1])) == 0.0  # 5 ≤ 5
    assert is_feasible(t, deployment_matrix(np.array([1, 1]), 2), np.array([1, 1]))
    assert not is_feasible(t, deployment_matrix(np.array([0, 0]), 2))
    x = np.array([[1, 1], [0, 1]])  # a replica of step 0 on device 1 takes its memory too: 3 + 2 = 5 ≤ 5
    assert is_feasible(t, x, np.array([1, 1]))
    assert not is_feasible(t, x, np.array([0, 0]))  # step 1 is not deployed on device 0
    assert not is_feasible(t, np.array([[1, 0], [0, 0]]))  # step 1 nowhere


def test_literal_objective_rewards_replicas():
    """Step 1 replicated on devices 1 and 2: the literal objective takes hand-off 0→1 as (1, 1) and 1→2 as (2, 2),
    two pairs no single request can use together, so it prices the chain below every served path of X."""
    comp = np.ones((3, 3))
    link = np.array([[0.0, 5.0, 5.0], [5.0, 0.0, 5.0], [5.0, 5.0, 0.0]])
    t = Tables(comp, np.stack([link, link]), np.zeros(3), np.zeros(3), np.ones(3), np.full(3, 2.0))
    x = np.array([[0, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert literal_latency(t, x) == pytest.approx(3.0)  # compute only: both hand-offs are "free"
    for serve in ([1, 1, 2], [1, 2, 2]):  # the served paths X allows
        assert is_feasible(t, x, np.array(serve))
        assert path_latency_s(t, np.array(serve)) == pytest.approx(8.0)
    single = deployment_matrix(np.array([1, 1, 2]), 3)
    assert literal_latency(t, single) == pytest.approx(path_latency_s(t, np.array([1, 1, 2])))


def test_generator_contracts():
    cfg = InstanceConfig()
    a = generate(7, 5, np.random.default_rng(3), cfg)
    b = generate(7, 5, np.random.default_rng(3), cfg)
    np.testing.assert_array_equal(a.compute_flop, b.compute_flop)
    np.testing.assert_array_equal(a.rate_bps, b.rate_bps)
    assert a.compute_flop.shape == (7,) and a.handoff_bits.shape == (6,) and a.rate_bps.shape == (5, 5)
    assert np.all(np.isinf(np.diag(a.rate_bps))) and np.all(np.isfinite(a.rate_bps[~np.eye(5, dtype=bool)]))
    np.testing.assert_array_equal(a.rate_bps, a.rate_bps.T)  # reciprocal links
    assert a.capacity_bytes.max() >= a.memory_bytes.max()
    assert np.all(np.diff(a.memory_bytes) > 0) and np.all(np.diff(a.handoff_bits) > 0)  # context grows
    assert a.speed_flops.min() >= cfg.speed_min_flops and a.speed_flops.max() <= cfg.speed_max_flops
    # capacity slack: mean capacity × M / total memory is around capacity_slack (u ~ U[0.5, 1.5])
    big = generate(400, 30, np.random.default_rng(0), cfg)
    assert big.capacity_bytes.sum() / big.memory_bytes.sum() == pytest.approx(cfg.capacity_slack, rel=0.1)


def test_generator_bad_config():
    with pytest.raises(ConfigError, match="capacity_slack"):
        generate(3, 3, np.random.default_rng(0), InstanceConfig(capacity_slack=0.5))
    with pytest.raises(ConfigError, match="tokens_max"):
        InstanceConfig(tokens_min=64, tokens_max=32).validate()


def test_json_roundtrip(tmp_path):
    insts = [generate(4, 3, np.random.default_rng(s)) for s in range(2)]
    save_instances(tmp_path / "x.json", insts, [{"label": [0, 1, 2, 0]}, {"label": [1, 1, 1, 1]}])
    back, extra = load_instances(tmp_path / "x.json")
    assert extra[0]["label"] == [0, 1, 2, 0]
    for a, b in zip(insts, back, strict=True):
        np.testing.assert_array_equal(a.rate_bps, b.rate_bps)
        np.testing.assert_allclose(a.compute_flop, b.compute_flop)
        assert path_latency_s(a.tables(), np.array([0, 1, 2, 0])) == path_latency_s(b.tables(), np.array([0, 1, 2, 0]))


def test_bad_instance_shape():
    d = tiny().to_dict()
    d["memory_bytes"] = [1.0]
    with pytest.raises(ConfigError, match="memory_bytes"):
        Instance.from_dict(d)
