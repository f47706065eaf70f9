"""Flower (Message API, flwr 1.41) adapter for the federated LoRA loop of :mod:`edgegen.fedtune.rounds`.

The same rounds as :func:`edgegen.fedtune.rounds.run`, with every device a Flower node:

1. **Discovery** (first round, and whenever a new node shows up): a ``query.device`` message asks each node
   for its device index k (``node_config["device-index"]`` in deployment, ``node_config["partition-id"]``
   in simulation) and its LoRA rank (``node_config["lora-rank"]`` if set, else the config's rank for
   device k). The strategy caches ``node_id -> (k, rank)``.
2. **configure_train**: the round's devices are picked by :func:`rounds.select` (``all`` or ``random``) and
   each gets its own unicast payload :func:`rounds.client_payload` (ArrayRecord) plus a ConfigRecord with
   the run's config as JSON, the 0-based round index, k and the rank.
3. **ClientApp train**: rebuilds the task and devices from the JSON (cached per process) and runs
   :func:`rounds.local_update` with ``derive_seed(seed, "client", k, t)`` on shard k; replies with the
   update (ArrayRecord) and a MetricRecord (``num-examples``, ``train-loss``, ``rank``, ``device-index``).
4. **aggregate_train**: replies sorted by k, malformed ones dropped by :func:`rounds.check_update` (and
   logged), the rest aggregated by :func:`rounds.aggregate`; the server evaluates the global model.

Fault injection (``dropout_prob``, ``corrupt_prob``) is replayed on the server from the same seeded
generator as the in-process loop, so a Flower run and an in-process run of one config give identical
global weights. Real failures come on top: a device without a node, or a node that does not answer in
time, counts as dropped; a ClientApp exception fails the run (``fail_on_client_error``, the default) or
counts as dropped.

Entry points: :func:`run_flower_simulation` (simulation engine, returns the final global state) and the
module-level ``server_app`` / ``client_app`` for ``flwr run`` and SuperLink + SuperNodes (config through
run_config, see :func:`config_from_run_config`). See ``docs/fedtune_flower.md``.
"""

from __future__ import annotations

import os

# Read by flwr at import time: no telemetry POSTs, no INFO logs (override by setting them yourself).
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_LOG_LEVEL", "ERROR")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

import copy  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import Strategy  # noqa: E402

from edgegen.config import ConfigError, from_dict  # noqa: E402
from edgegen.fedtune import rounds  # noqa: E402
from edgegen.fedtune.rounds import FedConfig  # noqa: E402
from edgegen.fedtune.tasks import Task, load_task  # noqa: E402
from edgegen.seeding import derive_seed, seed_everything  # noqa: E402

log = logging.getLogger(__name__)

QUERY_DEVICE = "query.device"
SUPPORTED_SELECTION = ("all", "random")
DEFAULT_TIMEOUT_S = 600.0
OUT_FORMAT = 1


# --------------------------------------------------------------------------- config on the wire


def config_to_json(cfg: FedConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def config_from_json(text: str) -> FedConfig:
    """Inverse of :func:`config_to_json` (JSON lists back to the tuples the dataclass declares); validated."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"fed-config must be a JSON object of FedConfig fields, got {text!r}")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return from_dict(FedConfig, data).validate()


def _field_value(name: str, default, value):
    """A run_config value (TOML scalar) as the type of the FedConfig field; tuples as "2,4,8"."""
    if isinstance(default, tuple):
        items = value if isinstance(value, (list, tuple)) else [s for s in str(value).split(",") if s.strip()]
        kind = type(default[0]) if default else float
        try:
            return tuple(kind(x) for x in items)
        except ValueError:
            raise ConfigError(f"{name} must be a comma-separated list of {kind.__name__}, got {value!r}") from None
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a {type(default).__name__}, got {value!r}") from None


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """Server-side knobs of a Flower run that are not part of the experiment (FedConfig)."""

    min_nodes: int | None = None
    """Nodes to wait for before the first round (default: one per device, cfg.num_clients)."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    """How long to wait for nodes to connect and for the replies of one round."""
    out_path: str | None = None
    """Where to save the final global state (torch.save) and, next to it, a JSON record of the run."""
    fail_on_client_error: bool = True
    """A ClientApp exception fails the run (True) or counts as a dropped device (False)."""


SERVE_KEYS = {"fed-config", "min-nodes", "timeout-s", "out-path", "fail-on-client-error"}


def config_from_run_config(run_config: dict) -> tuple[FedConfig, ServeOptions]:
    """FedConfig + ServeOptions from a Flower run_config (``[tool.flwr.app.config]`` and ``flwr run -c``).

    ``fed-config`` is a JSON object of FedConfig fields; any FedConfig field may also be given on its own in
    dash form (``num-clients = 2``, ``client-ranks = "2,4"``, ``method = "flexlora"``) and wins over the JSON.
    Plus ``min-nodes``, ``timeout-s``, ``out-path`` and ``fail-on-client-error`` (see :class:`ServeOptions`).
    """
    fields = {f.name.replace("_", "-"): f.name for f in dataclasses.fields(FedConfig)}
    unknown = set(run_config) - set(fields) - SERVE_KEYS
    if unknown:
        raise ConfigError(f"unknown run_config key(s) {sorted(unknown)}; known: {sorted(SERVE_KEYS | set(fields))}")
    data = json.loads(str(run_config["fed-config"])) if run_config.get("fed-config") else {}
    defaults = dataclasses.asdict(FedConfig())
    for key, value in run_config.items():
        if key in fields:
            data[fields[key]] = _field_value(key, defaults[fields[key]], value)
    cfg = config_from_json(json.dumps(data))
    opts = ServeOptions(
        min_nodes=int(run_config["min-nodes"]) if "min-nodes" in run_config else None,
        timeout_s=float(run_config.get("timeout-s", DEFAULT_TIMEOUT_S)),
        out_path=str(run_config["out-path"]) if run_config.get("out-path") else None,
        fail_on_client_error=str(run_config.get("fail-on-client-error", True)).lower() not in ("false", "0"),
    )
    return cfg, opts


# --------------------------------------------------------------------------- per-process caches


@functools.lru_cache(maxsize=2)
def cached_task(tier: str, cache_dir: str) -> Task:
    """The task of a tier, loaded once per process (the digits tier pre-trains its MLP, ~3 s)."""
    return load_task(tier, cache_dir)


@functools.lru_cache(maxsize=4)
def cached_setup(cfg_json: str) -> tuple[FedConfig, Task, rounds.Devices]:
    """(config, task, devices) of a run, rebuilt from its JSON once per process and config."""
    cfg = config_from_json(cfg_json)
    task = cached_task(cfg.tier, cfg.cache_dir)
    return cfg, task, rounds.make_devices(cfg, task)


def node_identity(node_config: dict, cfg: FedConfig, devices: rounds.Devices) -> tuple[int, int]:
    """(device index k, LoRA rank) of a node from its node_config.

    k: ``device-index`` (deployment, ``--node-config 'device-index=0'``) or ``partition-id`` (simulation).
    rank: ``lora-rank`` if given (the node's own budget), else the config's rank of device k.
    """
    key = "device-index" if "device-index" in node_config else "partition-id"
    if key not in node_config:
        raise ConfigError("node_config needs device-index (e.g. flower-supernode --node-config 'device-index=0'), "
                          f"got keys {sorted(node_config)}")
    k = int(node_config[key])
    if not 0 <= k < cfg.num_clients:
        raise ConfigError(f"node_config {key} must be in [0, {cfg.num_clients - 1}] (num_clients), got {k}")
    rank = int(node_config.get("lora-rank", devices.ranks[k]))
    if rank < 1:
        raise ConfigError(f"node_config lora-rank must be >= 1, got {rank}")
    return k, rank


# --------------------------------------------------------------------------- ClientApp

client_app = ClientApp()


@client_app.query("device")
def query_device(msg: Message, context: Context) -> Message:
    """Answer the server's discovery query: device index, rank and number of local samples."""
    cfg, _, devices = cached_setup(str(msg.content["config"]["fed-config"]))  # also warms the task cache
    k, rank = node_identity(context.node_config, cfg, devices)
    info = ConfigRecord({"device-index": k, "rank": rank, "num-examples": len(devices.shards[k])})
    return Message(RecordDict({"info": info}), reply_to=msg)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """One device's local update (:func:`rounds.local_update`) on its payload; deterministic given (seed, k, t)."""
    conf = msg.content["config"]
    cfg, task, devices = cached_setup(str(conf["fed-config"]))
    k, t, rank = int(conf["device-index"]), int(conf["round-index"]), int(conf["rank"])
    mine, _ = node_identity(context.node_config, cfg, devices)
    if k != mine:
        raise ValueError(f"server sent device {k}'s payload to the node of device {mine}")
    # One thread like rounds.run (seed_everything); more threads may change the last bits of the update.
    torch.set_num_threads(int(context.node_config.get("torch-threads", 1)))
    payload = dict(msg.content["arrays"].to_torch_state_dict())
    seed = derive_seed(cfg.seed, "client", k, t)
    update, loss = rounds.local_update(cfg, task, payload, rank, devices.shards[k], seed)
    metrics = MetricRecord({"num-examples": len(devices.shards[k]), "train-loss": loss, "rank": rank,
                            "device-index": k})
    return Message(RecordDict({"arrays": ArrayRecord(update), "metrics": metrics}), reply_to=msg)


# --------------------------------------------------------------------------- Strategy


class FedLoRAStrategy(Strategy):
    """The round of :func:`rounds.run_round` as a Flower strategy (training and aggregation; no latency model).

    ``node_devices`` caches ``node_id -> (k, rank)``; ``history`` holds one dict of metrics per round.
    """

    def __init__(self, cfg: FedConfig, task: Task | None = None, min_nodes: int | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, fail_on_client_error: bool = True) -> None:
        cfg.validate()
        if cfg.selection not in SUPPORTED_SELECTION:
            raise ConfigError(f"selection must be one of {list(SUPPORTED_SELECTION)} on Flower, got "
                              f"{cfg.selection!r} (deadline selection needs the in-process latency model)")
        self.cfg = cfg
        self.cfg_json = config_to_json(cfg)
        self.task = task or cached_task(cfg.tier, cfg.cache_dir)
        self.devices = rounds.make_devices(cfg, self.task)
        self.min_nodes = cfg.num_clients if min_nodes is None else min_nodes
        if not 1 <= self.min_nodes <= cfg.num_clients:
            raise ConfigError(f"min_nodes must be in [1, {cfg.num_clients}] (num_clients), got {self.min_nodes}")
        self.timeout_s = timeout_s
        self.fail_on_client_error = fail_on_client_error
        self.node_devices: dict[int, tuple[int, int]] = {}
        self.history: list[dict] = []
        self._round: dict = {}  # what configure_train planned, for aggregate_train

    def init_state(self) -> dict[str, torch.Tensor]:
        return rounds.init_state(self.cfg, self.task, self.devices)

    def summary(self) -> None:
        log.info("FedLoRAStrategy: %s, %d devices, ranks %s, selection %s", self.cfg.method, self.cfg.num_clients,
                 self.devices.ranks, self.cfg.selection)

    # -- discovery

    def _wait_for_nodes(self, grid: Grid) -> list[int]:
        deadline = time.monotonic() + self.timeout_s
        while len(ids := sorted(grid.get_node_ids())) < self.min_nodes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(ids)} of min_nodes={self.min_nodes} Flower nodes connected "
                                   f"within {self.timeout_s:.0f} s")
            time.sleep(1.0)
        return ids

    def discover(self, grid: Grid) -> None:
        """Ask every node not seen yet for its device index and rank (a ``query.device`` round)."""
        ids = self._wait_for_nodes(grid)
        todo = [n for n in ids if n not in self.node_devices]
        if not todo:
            return
        msgs = [Message(RecordDict({"config": ConfigRecord({"fed-config": self.cfg_json})}), dst_node_id=n,
                        message_type=QUERY_DEVICE) for n in todo]
        r_max = max(self.devices.ranks)
        for rep in grid.send_and_receive(msgs, timeout=self.timeout_s):
            node = rep.metadata.src_node_id
            if rep.has_error():
                raise RuntimeError(f"device query failed on node {node}: {rep.error.reason}")
            k, rank = int(rep.content["info"]["device-index"]), int(rep.content["info"]["rank"])
            if self.cfg.method in rounds.ZERO_PAD_METHODS and rank > r_max:
                raise ConfigError(f"node {node} (device {k}) asks for lora-rank {rank} but the global factors have "
                                  f"rank {r_max} (max of client_ranks); lower its lora-rank or raise client_ranks")
            for other, (k2, _) in self.node_devices.items():
                if k2 == k and other != node:
                    raise ConfigError(f"nodes {other} and {node} both claim device-index {k}")
            self.node_devices[node] = (k, rank)
        log.info("nodes -> (device, rank): %s", self.node_devices)

    # -- training

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.discover(grid)
        cfg, t = self.cfg, server_round - 1
        state = dict(arrays.to_torch_state_dict())
        online = set(grid.get_node_ids())
        node_of = {k: n for n, (k, _) in self.node_devices.items() if n in online}
        rank_of = {k: r for k, r in self.node_devices.values()}
        chosen = [int(k) for k in rounds.select(cfg, self.devices, t, None)]
        # Replay the in-process fault draws (same generator, same order) so both paths stay identical.
        faults = np.random.default_rng(derive_seed(cfg.seed, "faults", t))
        dropped, corrupt_with = set(), {}
        for k in chosen:
            if faults.random() < cfg.dropout_prob:
                dropped.add(k)
                continue
            if faults.random() < cfg.corrupt_prob:
                corrupt_with[k] = copy.deepcopy(faults)
                shapes = rounds.expected_shapes(cfg, self.task, state, rank_of.get(k, self.devices.ranks[k]))
                rounds.corrupt({key: torch.zeros(s) for key, s in shapes.items()}, faults)  # advance identically
        offline = [k for k in chosen if k not in dropped and k not in node_of]
        if offline:
            log.warning("round %d: devices %s have no connected node; counted as dropped", server_round, offline)
        messages, sent = [], {}
        for k in chosen:
            if k in dropped or k not in node_of:
                continue
            rank = rank_of[k]
            conf = ConfigRecord({**dict(config), "fed-config": self.cfg_json, "server-round": server_round,
                                 "round-index": t, "device-index": k, "rank": rank})
            payload = ArrayRecord(rounds.client_payload(cfg, self.task, state, rank))
            messages.append(Message(RecordDict({"arrays": payload, "config": conf}), dst_node_id=node_of[k],
                                    message_type=MessageType.TRAIN))
            sent[node_of[k]] = k
        self._round = {"t": t, "state": state, "chosen": chosen, "sent": sent, "corrupt": corrupt_with,
                       "dropped": len(dropped) + len(offline)}
        return messages

    def read_reply(self, msg: Message, expected_k: int, rank: int,
                   state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int, float] | str:
        """(update, num_examples, loss) of a train reply, or why it is malformed (corruption replay included)."""
        content = msg.content
        if "arrays" not in content.array_records or "metrics" not in content.metric_records:
            return f"reply needs an ArrayRecord 'arrays' and a MetricRecord 'metrics', got {list(content.keys())}"
        metrics = content.metric_records["metrics"]
        try:
            k, n, loss = int(metrics["device-index"]), int(metrics["num-examples"]), float(metrics["train-loss"])
        except (KeyError, TypeError, ValueError) as err:
            return f"metrics need device-index, num-examples and train-loss: {err!r}"
        if k != expected_k:
            return f"reply is for device {k}, expected device {expected_k}"
        if n < 1:
            return f"num-examples must be >= 1, got {n}"
        update = dict(content.array_records["arrays"].to_torch_state_dict())
        if k in self._round["corrupt"]:  # fault injection, as in rounds.run_round
            update = rounds.corrupt(update, copy.deepcopy(self._round["corrupt"][k]))
        why = rounds.check_update(update, rounds.expected_shapes(self.cfg, self.task, state, rank))
        return why if why is not None else (update, n, loss)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        plan = self._round
        state, sent = plan["state"], dict(plan["sent"])
        accepted, rejected, dropped = [], 0, plan["dropped"]
        for msg in replies:
            node = msg.metadata.src_node_id
            if node not in sent:
                log.warning("round %d: unexpected or duplicate reply from node %s ignored", server_round, node)
                continue
            k = sent.pop(node)
            if msg.has_error():
                if self.fail_on_client_error:
                    raise RuntimeError(f"ClientApp of node {node} (device {k}) failed: {msg.error.reason}")
                log.warning("round %d: device %d (node %s) failed, counted as dropped: %s", server_round, k, node,
                            msg.error.reason)
                dropped += 1
                continue
            rank = self.node_devices[node][1]
            got = self.read_reply(msg, k, rank, state)
            if isinstance(got, str):
                log.warning("round %d: rejected the update of device %d (node %s): %s", server_round, k, node, got)
                rejected += 1
                continue
            update, n, loss = got
            accepted.append((k, update, rank, n, loss))
        if sent:
            log.warning("round %d: no reply from devices %s within %.0f s; counted as dropped", server_round,
                        sorted(sent.values()), self.timeout_s)
            dropped += len(sent)
        accepted.sort(key=lambda a: a[0])  # the in-process loop aggregates in ascending device order
        new = rounds.aggregate(self.cfg, self.task, state, [(u, r, n) for _, u, r, n, _ in accepted])
        row = {"round": server_round, "clients": len(plan["chosen"]), "aggregated": len(accepted),
               "dropped": dropped, "rejected": rejected,
               "train_loss": float(np.mean([a[4] for a in accepted])) if accepted else float("nan")}
        self.history.append(row)
        metrics = MetricRecord({k.replace("_", "-"): v for k, v in row.items()})
        return ArrayRecord(new), metrics

    # -- evaluation (server side, on the test set, like the in-process loop)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def evaluate_global(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """``evaluate_fn`` for :meth:`Strategy.start`: test accuracy/loss every ``eval_every`` rounds and last."""
        if server_round == 0 or (server_round % self.cfg.eval_every and server_round != self.cfg.rounds):
            return None
        state = dict(arrays.to_torch_state_dict())
        acc, loss = rounds.evaluate(rounds.global_model(self.cfg, self.task, state), self.task.test)
        if self.history and self.history[-1]["round"] == server_round:
            self.history[-1].update(test_acc=acc, test_loss=loss)
        return MetricRecord({"test-acc": acc, "test-loss": loss})


# --------------------------------------------------------------------------- ServerApp


def serve(grid: Grid, cfg: FedConfig, opts: ServeOptions | None = None,
          task: Task | None = None) -> tuple[dict[str, torch.Tensor], FedLoRAStrategy]:
    """Run ``cfg.rounds`` rounds on a Flower grid; return (final global state, strategy)."""
    opts = opts or ServeOptions()
    seed_everything(cfg.seed)  # as rounds.run: seeds and one torch thread for the server-side maths
    strategy = FedLoRAStrategy(cfg, task, min_nodes=opts.min_nodes, timeout_s=opts.timeout_s,
                               fail_on_client_error=opts.fail_on_client_error)
    wall0 = time.perf_counter()
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(strategy.init_state()), num_rounds=cfg.rounds,
                            timeout=opts.timeout_s, evaluate_fn=strategy.evaluate_global)
    state = dict(result.arrays.to_torch_state_dict())
    if opts.out_path:
        save_result(opts.out_path, state, strategy, time.perf_counter() - wall0)
    return state, strategy


def save_result(path: str | Path, state: dict[str, torch.Tensor], strategy: FedLoRAStrategy, wall_s: float) -> None:
    """``path``: the final global state (torch.save); ``path`` with suffix .json: config, nodes, history."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    path.with_suffix(".json").write_text(json.dumps({
        "format": OUT_FORMAT, "config": dataclasses.asdict(strategy.cfg), "wall_s": wall_s,
        "node_devices": {str(n): {"device_index": k, "rank": r} for n, (k, r) in strategy.node_devices.items()},
        "history": strategy.history}, indent=1))


server_app = ServerApp()


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
    """``flwr run`` / deployment: FedConfig and options from run_config (see :func:`config_from_run_config`)."""
    cfg, opts = config_from_run_config(dict(context.run_config))
    serve(grid, cfg, opts)


# --------------------------------------------------------------------------- simulation engine


def backend_config(quiet: bool = True) -> dict:
    """Ray backend: one CPU per ClientApp (so two nodes train in parallel on two cores), no dashboard."""
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": os.cpu_count() or 1, "num_gpus": 0, "include_dashboard": False,
                      "logging_level": "ERROR" if quiet else "INFO", "log_to_driver": not quiet},
    }


def run_flower_simulation(cfg: FedConfig, num_nodes: int | None = None, rounds: int | None = None, *,
                          out_path: str | Path | None = None, info: dict | None = None, quiet: bool = True,
                          timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, torch.Tensor]:
    """Run ``cfg`` on Flower's simulation engine (Ray); return the final global state.

    ``num_nodes`` SuperNodes (default ``cfg.num_clients``; node i is device i, so with fewer nodes the
    devices without one count as dropped); ``rounds`` overrides ``cfg.rounds``. ``info``, if given, is
    filled with ``node_devices`` ({node_id: (k, rank)}), ``history`` (per-round metrics) and ``wall_s``.
    ``out_path``: also save the state and a JSON record there (:func:`save_result`). ``quiet``: Flower's
    console log at ERROR (for the rest of the process) and Ray worker output not forwarded. ``timeout_s``:
    how long to wait for the nodes and for each round's replies.
    """
    from flwr.simulation import run_simulation
    from flwr.supercore.logger import update_console_handler

    if rounds is not None:
        cfg = dataclasses.replace(cfg, rounds=rounds)
    cfg.validate()
    num_nodes = cfg.num_clients if num_nodes is None else num_nodes
    if not 1 <= num_nodes <= cfg.num_clients:
        raise ConfigError(f"num_nodes must be in [1, {cfg.num_clients}] (num_clients), got {num_nodes}")
    if quiet:
        update_console_handler(level="ERROR")
    opts = ServeOptions(min_nodes=num_nodes, timeout_s=timeout_s, out_path=str(out_path) if out_path else None)
    task = cached_task(cfg.tier, cfg.cache_dir)
    box: dict = {}
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:  # runs in a thread of this process
        box["state"], box["strategy"] = serve(grid, cfg, opts, task)

    wall0 = time.perf_counter()
    run_simulation(server_app=app, client_app=client_app, num_supernodes=num_nodes,
                   backend_config=backend_config(quiet))
    if "state" not in box:
        raise RuntimeError("the Flower simulation ended without a result (see the Flower log above)")
    if info is not None:
        strategy = box["strategy"]
        info.update(node_devices=dict(strategy.node_devices), history=list(strategy.history),
                    wall_s=time.perf_counter() - wall0)
    return box["state"]
