"""Tests of the Flower adapter (edgegen.fedtune.flower): same global weights as the in-process loop.

One test runs the real simulation engine (Ray, 2 nodes, 1 round); the others drive the same strategy and
ClientApp through :class:`LocalGrid`, a Grid stand-in that delivers messages in this process (no Ray).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import pytest
import torch

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # read when flwr is first imported
os.environ.setdefault("FLWR_LOG_LEVEL", "ERROR")
pytest.importorskip("flwr")
pytest.importorskip("peft")

from flwr.app import ArrayRecord, Context, Error, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402

from edgegen.config import ConfigError  # noqa: E402
from edgegen.fedtune import rounds  # noqa: E402
from edgegen.fedtune.flower import app as fl  # noqa: E402
from edgegen.fedtune.rounds import FedConfig  # noqa: E402
from edgegen.runs import RunDir  # noqa: E402
from edgegen.seeding import derive_seed  # noqa: E402

# clients_per_round must not exceed num_clients (the default 10 does not validate with 2 clients).
CFG = FedConfig(num_clients=2, client_ranks=(2, 4), device_gflops=(1.0, 2.0), rounds=1, local_steps=2, batch_size=16,
                method="hetlora_size", clients_per_round=2)


class LocalGrid:
    """Duck-typed ``flwr.serverapp.Grid``: each message goes to a ClientApp in this process.

    Node ids run opposite to the device indices and replies come back in reverse order, so the strategy
    has to map nodes to devices and sort the replies itself. A ClientApp exception becomes an error reply,
    as on the real engines.
    """

    def __init__(self, app: ClientApp, node_configs: list[dict]) -> None:
        self.app = app
        self.contexts = {900 - 7 * i: Context(run_id=1, node_id=900 - 7 * i, node_config=nc, state=RecordDict(),
                                              run_config={}) for i, nc in enumerate(node_configs)}

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None) -> list[Message]:
        replies = []
        for msg in messages:
            try:
                replies.append(self.app(msg, self.contexts[msg.metadata.dst_node_id]))
            except Exception as err:  # noqa: BLE001 - mirrors Flower turning ClientApp errors into replies
                replies.append(Message(Error(code=0, reason=repr(err)), reply_to=msg))
        return replies[::-1]


def sim_nodes(n: int) -> list[dict]:
    return [{"partition-id": i, "num-partitions": n} for i in range(n)]


def in_process(cfg: FedConfig, tmp_path, task=None) -> tuple[dict[str, torch.Tensor], dict]:
    summary = rounds.run(cfg, tmp_path, quiet=True, task=task)
    return torch.load(tmp_path / "ckpt" / "state.pt", weights_only=True), summary


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:  # bit-exact: same functions, same seeds, one torch thread on both sides
        assert torch.equal(a[key], b[key]), (key, float((a[key] - b[key]).abs().max()))


@pytest.fixture(autouse=True)
def server_identity(monkeypatch):
    """flwr 1.41 stamps new Messages with the process's TaskIdentity, which the real runtimes set; LocalGrid
    runs the ServerApp side in the test process, so set it here (restored afterwards)."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", 0)):
        monkeypatch.setattr(TaskIdentity, attr, value)


@pytest.fixture(scope="module")
def task():
    return fl.cached_task("digits", CFG.cache_dir)


def test_flower_simulation_matches_in_process(tmp_path) -> None:
    """Real simulation engine (Ray, 2 nodes with ranks 2 and 4): bit-identical to rounds.run."""
    info: dict = {}
    state = fl.run_flower_simulation(CFG, info=info, timeout_s=120)
    ref, _ = in_process(CFG, tmp_path)
    assert_same_state(state, ref)
    assert sorted(info["node_devices"].values()) == [(0, 2), (1, 4)]  # each node trained its own rank
    assert state["lora.fc1.B"].shape == (128, 4) and state["lora.fc1.A"].shape == (4, 64)
    assert torch.any(state["lora.fc1.B"][:, 2:] != 0)  # the rank-4 device filled the slices the rank-2 one lacks
    assert info["history"][0]["aggregated"] == 2 and 0.0 <= info["history"][0]["test_acc"] <= 1.0


@pytest.mark.parametrize("changes", [
    {"method": "flexlora", "rounds": 2},
    {"method": "flora", "rounds": 2},
    {"method": "full_ft"},
    {"method": "hetlora_slice", "rounds": 3, "selection": "random", "clients_per_round": 2, "dropout_prob": 0.3,
     "corrupt_prob": 0.5},
])
def test_strategy_matches_in_process_without_ray(tmp_path, task, changes) -> None:
    three = {"num_clients": 3, "client_ranks": (2, 4, 8), "device_gflops": (1.0, 2.0, 4.0), "clients_per_round": 3}
    cfg = dataclasses.replace(CFG, **(three | changes))
    state, strategy = fl.serve(LocalGrid(fl.client_app, sim_nodes(3)), cfg, task=task)
    ref, summary = in_process(cfg, tmp_path, task)
    assert_same_state(state, ref)
    rows = RunDir(tmp_path, tensorboard=False).read_metrics()
    assert [row["dropped"] for row in strategy.history] == [r["dropped"] for r in rows]
    assert sum(row["rejected"] for row in strategy.history) == summary["rejected"]
    if cfg.corrupt_prob:  # the fault replay was exercised, not vacuous
        assert summary["rejected"] > 0 and summary["dropped"] > 0


bad_app = ClientApp()


@bad_app.query("device")
def _query(msg: Message, context: Context) -> Message:
    return fl.query_device(msg, context)


@bad_app.train()
def _train(msg: Message, context: Context) -> Message:
    """Device 1 sends NaN (node_config bad=nan), a wrong shape (bad=shape) or no metrics (bad=nometrics)."""
    reply = fl.train(msg, context)
    how = context.node_config.get("bad")
    if how is None:
        return reply
    update = dict(reply.content["arrays"].to_torch_state_dict())
    if how == "nan":
        update["lora.fc2.A"] = update["lora.fc2.A"].clone().fill_(float("nan"))
    elif how == "shape":
        update["lora.fc1.B"] = update["lora.fc1.B"][:, :-1]
    elif how == "raise":
        raise RuntimeError("device on fire")
    metrics = reply.content["metrics"] if how != "nometrics" else MetricRecord({"num-examples": 5})
    return Message(RecordDict({"arrays": ArrayRecord(update), "metrics": metrics}), reply_to=msg)


@pytest.mark.parametrize("how", ["nan", "shape", "nometrics"])
def test_malformed_reply_is_rejected(task, caplog, how) -> None:
    nodes = sim_nodes(2)
    nodes[1]["bad"] = how
    with caplog.at_level(logging.WARNING, logger=fl.__name__):
        state, strategy = fl.serve(LocalGrid(bad_app, nodes), CFG, task=task)
    assert strategy.history[0]["rejected"] == 1 and strategy.history[0]["aggregated"] == 1
    assert "rejected the update of device 1" in caplog.text
    devices = rounds.make_devices(CFG, task)
    init = rounds.init_state(CFG, task, devices)
    payload = rounds.client_payload(CFG, task, init, 2)
    good, _ = rounds.local_update(CFG, task, payload, 2, devices.shards[0], derive_seed(CFG.seed, "client", 0, 0))
    assert_same_state(state, rounds.aggregate(CFG, task, init, [(good, 2, len(devices.shards[0]))]))


def test_client_error_fails_the_run_or_counts_as_dropped(task) -> None:
    nodes = sim_nodes(2)
    nodes[1]["bad"] = "raise"
    with pytest.raises(RuntimeError, match="device 1.*device on fire"):
        fl.serve(LocalGrid(bad_app, nodes), CFG, task=task)
    _, strategy = fl.serve(LocalGrid(bad_app, nodes), CFG, fl.ServeOptions(fail_on_client_error=False), task)
    assert strategy.history[0]["dropped"] == 1 and strategy.history[0]["aggregated"] == 1


def test_node_config_device_index_and_rank(task) -> None:
    # deployment keys win; lora-rank overrides the config's rank of the device
    nodes = [{"device-index": 1, "partition-id": 0}, {"device-index": 0, "lora-rank": 1}]
    _, strategy = fl.serve(LocalGrid(fl.client_app, nodes), CFG, task=task)
    assert sorted(strategy.node_devices.values()) == [(0, 1), (1, 4)]
    assert strategy.history[0]["aggregated"] == 2
    with pytest.raises(ConfigError, match="lora-rank 8"):
        fl.serve(LocalGrid(fl.client_app, [{"device-index": 0, "lora-rank": 8}, {"device-index": 1}]), CFG, task=task)
    with pytest.raises(RuntimeError, match="device-index must be in"):
        fl.serve(LocalGrid(fl.client_app, [{"device-index": 0}, {"device-index": 5}]), CFG, task=task)
    with pytest.raises(ConfigError, match="both claim device-index 0"):
        fl.serve(LocalGrid(fl.client_app, [{"device-index": 0}, {"device-index": 0}]), CFG, task=task)
    with pytest.raises(ConfigError, match="selection"):
        fl.FedLoRAStrategy(dataclasses.replace(CFG, selection="deadline"), task)


def test_run_config_round_trip(tmp_path) -> None:
    assert fl.config_from_json(fl.config_to_json(CFG)) == CFG  # tuples survive JSON
    run_config = {"fed-config": json.dumps({"method": "flexlora", "num_clients": 2, "rounds": 7}),
                  "client-ranks": "2,4", "device-gflops": "1,2", "clients-per-round": 2, "rounds": 3,
                  "local-steps": 2, "batch-size": 16,
                  "out-path": str(tmp_path / "s.pt"), "min-nodes": 1}
    cfg, opts = fl.config_from_run_config(run_config)
    assert cfg == dataclasses.replace(CFG, method="flexlora", rounds=3)  # single keys win over the JSON
    assert opts.min_nodes == 1 and opts.out_path == str(tmp_path / "s.pt") and opts.fail_on_client_error
    with pytest.raises(ConfigError, match="unknown run_config key"):
        fl.config_from_run_config({"num-round": 3})
    with pytest.raises(ConfigError, match="client-ranks"):
        fl.config_from_run_config({"client-ranks": "2,x"})
