"""An ASP worker: one process serving one conditional digits DDPM over HTTP, with admission control.

The worker's capacity is counted like the AaaS env's ASPs (arXiv 2303.13052, ../shared/specs/aigc_env.md): in
concurrently running denoising steps. A request for T steps occupies T units from admission until its image is
returned; a request that does not fit in the free capacity is refused with 503 and a message (the env's ASP would
crash and kill its running tasks; a live worker refuses instead and keeps serving).

Admitted requests are sampled by continuous batching: every tick advances every running request by one DDIM step in
one batched forward pass (rows carry their own timestep, so requests with different T and start times share a
batch). Each request has its own torch generator (x_T, then per-step noise), so its image is the one
``edgegen.gdm.train.generate`` would draw for it alone, whatever else shares the batch. Quality is measured on the
produced image: the probability the diffusion core's digits classifier (``edgegen.gdm.metrics``) gives the requested
class.

Endpoints (all need the token, see edgegen.serve.http): POST /v1/denoise {condition, steps, seed?} -> PNG (base64),
quality, compute time; GET /v1/health -> capacity, load, counters. SIGTERM drains: no new connections, running
requests finish, then the process exits.

Run: ``EDGEGEN_SERVE_TOKEN=... python -m edgegen.serve.worker --model-dir RUN --capacity-steps 60 --port 8101``.
"""

import asyncio
import base64
import contextlib
import dataclasses
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgegen.config import ConfigError, check_range
from edgegen.serve.http import (
    TOKEN_ENV,
    HTTPError,
    exit_zero_after_drain,
    parse_generate,
    read_json,
    read_token,
    token_app,
)


@dataclass(frozen=True)
class WorkerConfig:
    """One ASP worker process."""

    model_dir: Path = Path("runs/serve-bench/fleet/asp0")
    """Run directory of a conditional digits DDPM trained by edgegen.gdm.train.train (its ckpt/ is loaded)."""
    name: str = "asp0"
    """Worker name reported in responses and /v1/health."""
    capacity_steps: int = 60
    """Capacity in concurrently running denoising steps (a T-step request occupies T)."""
    eta: float = 0.0
    """DDIM eta of this worker's sampler (0 deterministic DDIM, 1 ancestral-like DDPM)."""
    min_steps: int = 1
    """Smallest accepted number of denoising steps."""
    max_steps: int = 100
    """Largest accepted number of denoising steps (also <= capacity_steps and the model's T)."""
    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0 to be reachable from other hosts)."""
    port: int = 8101
    """TCP port."""
    fd: int = -1
    """Serve on this inherited listening socket instead of binding host:port (the gateway passes one to the
    workers it spawns; -1 = bind host:port)."""
    max_body_bytes: int = 4096
    """Largest accepted request body."""
    token_env: str = TOKEN_ENV
    """Environment variable holding the shared service token."""
    drain_timeout_s: float = 60.0
    """On SIGTERM, wait this long for running requests before exiting anyway."""
    image_scale: int = 8
    """Each 8x8 digit pixel becomes image_scale x image_scale pixels in the PNG."""
    tick_delay_ms: float = 0.0
    """Extra wall time per batched tick, to emulate a slower edge device (0 = full speed of this CPU)."""

    def validate(self) -> None:
        check_range("capacity_steps", self.capacity_steps, 1, 10**7)
        check_range("eta", self.eta, 0.0, 1.0)
        check_range("min_steps", self.min_steps, 1, 10**6)
        check_range("max_steps", self.max_steps, self.min_steps, 10**6)
        check_range("port", self.port, 0, 65535)
        check_range("max_body_bytes", self.max_body_bytes, 16, 10**8)
        check_range("drain_timeout_s", self.drain_timeout_s, 0.0, 1e5)
        check_range("image_scale", self.image_scale, 1, 64)
        check_range("tick_delay_ms", self.tick_delay_ms, 0.0, 1e5)
        if not (Path(self.model_dir) / "ckpt" / "meta.json").exists():
            raise ConfigError(f"model_dir {self.model_dir}: no DDPM checkpoint there (ckpt/meta.json missing)")


# ------------------------------------------------------------------------------------------- denoising engine


@dataclass(eq=False)
class Job:
    """One admitted request being denoised: its DDIM timesteps, position in them and current x."""

    condition: int
    steps: int
    timesteps: list[int]
    x: torch.Tensor
    generator: torch.Generator
    admitted_s: float
    pos: int = 0
    result: dict | None = None

    @property
    def done(self) -> bool:
        return self.pos >= len(self.timesteps) - 1


class DenoisingEngine:
    """Admission control and continuous batching over one conditional DDPM (no HTTP; the worker drives it)."""

    def __init__(self, model: torch.nn.Module, sched, capacity_steps: int, eta: float = 0.0, image_scale: int = 8):
        self.model, self.sched, self.capacity_steps, self.eta = model.eval(), sched, capacity_steps, eta
        self.image_scale = image_scale
        self.active: list[Job] = []
        self.served = self.refused = self.ticks = 0

    @property
    def inflight_steps(self) -> int:
        return sum(j.steps for j in self.active)

    def admit(self, condition: int, steps: int, seed: int | None = None) -> Job:
        """Start a request, or raise HTTPError 503 when `steps` does not fit in the free capacity."""
        from edgegen.gdm.ddpm import ddim_timesteps

        free = self.capacity_steps - self.inflight_steps
        if steps > free:
            self.refused += 1
            raise HTTPError(503, f"at capacity: {self.inflight_steps} of {self.capacity_steps} denoising steps in use, "
                                 f"the request needs {steps}", {"Retry-After": "1"})
        gen = torch.Generator()
        gen.manual_seed(seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0]))
        x = torch.randn(1, self.model.data_dim, generator=gen)  # x_T, drawn first as generate() does
        job = Job(condition, steps, ddim_timesteps(self.sched.num_steps, steps) + [-1], x, gen, time.perf_counter())
        self.active.append(job)
        return job

    @torch.no_grad()
    def tick(self, jobs: list[Job]) -> list[Job]:
        """Advance every job by one DDIM step in one batched pass; finish (quality, PNG) the jobs that reached x_0.
        Touches only the given jobs, so it may run in a thread while the event loop admits new ones."""
        from edgegen.gdm.ddpm import ddim_step

        if not jobs:
            return []
        x = torch.cat([j.x for j in jobs])
        t = torch.tensor([j.timesteps[j.pos] for j in jobs])
        t_prev = torch.tensor([j.timesteps[j.pos + 1] for j in jobs])
        cond = torch.tensor([j.condition for j in jobs])
        # per-row noise from each job's generator, only where the sampler is stochastic (as sample_loop draws it)
        noise = torch.zeros_like(x)
        for i, j in enumerate(jobs):
            if self.eta > 0 and j.timesteps[j.pos + 1] >= 0:
                noise[i] = torch.randn(1, x.shape[1], generator=j.generator)[0]
        x_new, _, _ = ddim_step(self.model, x, t, t_prev, self.sched, self.eta, cond, noise, clip_x0=1.0)
        self.ticks += 1
        finished = []
        for i, j in enumerate(jobs):
            j.x = x_new[i:i + 1]
            j.pos += 1
            if j.done:
                finished.append(j)
        if finished:
            self._finish(finished)
        return finished

    def _finish(self, jobs: list[Job]) -> None:
        from edgegen.gdm.metrics import digit_probs

        images = torch.cat([j.x for j in jobs]).clamp(-1, 1)
        probs = digit_probs(images.numpy())
        for i, j in enumerate(jobs):
            j.result = {"condition": j.condition, "steps": j.steps,
                        "quality": float(probs[i, j.condition]), "predicted_class": int(probs[i].argmax()),
                        "image_png_b64": png_base64(images[i].numpy(), self.image_scale),
                        "compute_ms": 1000 * (time.perf_counter() - j.admitted_s)}

    def remove(self, jobs: list[Job]) -> None:
        ids = {id(j) for j in jobs}
        self.active = [j for j in self.active if id(j) not in ids]
        self.served += len(jobs)


def png_base64(image: np.ndarray, scale: int = 8) -> str:
    """An 8x8 digit in [-1, 1] as a grayscale PNG (white ink on black), upscaled by `scale`, base64-encoded."""
    from PIL import Image

    pixels = np.rint((np.asarray(image, np.float32).reshape(8, 8) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    pixels = np.kron(pixels, np.ones((scale, scale), np.uint8))
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ------------------------------------------------------------------------------------------------ HTTP app


def load_engine(cfg: WorkerConfig) -> DenoisingEngine:
    from edgegen.gdm.metrics import digits_classifier
    from edgegen.gdm.train import load_model

    digits_classifier()  # load (or train and cache) the quality classifier before the first request

    model, sched, train_cfg = load_model(cfg.model_dir)
    if not train_cfg.conditional:
        raise ConfigError(f"model_dir {cfg.model_dir} holds an unconditional DDPM; a worker needs a conditional one")
    if cfg.max_steps > sched.num_steps:
        raise ConfigError(f"max_steps must be <= the model's diffusion_steps {sched.num_steps}, got {cfg.max_steps}")
    return DenoisingEngine(model, sched, cfg.capacity_steps, cfg.eta, cfg.image_scale)


def make_app(cfg: WorkerConfig, engine: DenoisingEngine, token: str):
    """The worker's FastAPI app; a background task runs the batched denoising ticks."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    wake = asyncio.Event()
    waiting: dict[int, asyncio.Future] = {}

    async def tick_loop() -> None:
        while True:
            if not engine.active:
                wake.clear()
                await wake.wait()
            jobs = list(engine.active)
            finished = await asyncio.to_thread(engine.tick, jobs)
            if cfg.tick_delay_ms:
                await asyncio.sleep(cfg.tick_delay_ms / 1000)
            engine.remove(finished)
            for j in finished:
                fut = waiting.pop(id(j), None)
                if fut is not None and not fut.done():
                    fut.set_result(j.result)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(tick_loop())
        yield
        task.cancel()

    app = token_app(f"edgegen ASP worker {cfg.name}", lifespan, token)
    train_meta = _model_summary(cfg.model_dir)

    @app.post("/v1/denoise")
    async def denoise(request: Request):
        req = parse_generate(await read_json(request, cfg.max_body_bytes), cfg.min_steps, cfg.max_steps,
                             extra=("request_id",))
        job = engine.admit(req.condition, req.steps, req.seed)
        fut = asyncio.get_running_loop().create_future()
        waiting[id(job)] = fut
        wake.set()
        result = await fut
        return JSONResponse({"worker": cfg.name, **result})

    @app.get("/v1/health")
    async def health():
        return {"name": cfg.name, "pid": os.getpid(), "capacity_steps": engine.capacity_steps,
                "inflight_steps": engine.inflight_steps, "active_requests": len(engine.active),
                "served": engine.served, "refused": engine.refused, "ticks": engine.ticks, "eta": cfg.eta,
                "min_steps": cfg.min_steps, "max_steps": cfg.max_steps, "tick_delay_ms": cfg.tick_delay_ms,
                "model": train_meta}

    return app


def _model_summary(model_dir: Path) -> dict:
    import json

    meta = json.loads((Path(model_dir) / "ckpt" / "meta.json").read_text())
    c = meta["config"]
    return {k: c[k] for k in ("hidden", "blocks", "train_steps", "diffusion_steps", "schedule", "seed")}


def serve_worker(cfg: WorkerConfig) -> None:
    """Load the model and serve until SIGTERM/SIGINT (then drain running requests and exit)."""
    import uvicorn

    cfg.validate()
    torch.set_num_threads(1)
    token = read_token(cfg.token_env)
    engine = load_engine(cfg)
    app = make_app(cfg, engine, token)
    exit_zero_after_drain()
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                                           ws="none", timeout_graceful_shutdown=int(cfg.drain_timeout_s) or None))
    if cfg.fd >= 0:
        import socket

        server.run(sockets=[socket.socket(fileno=cfg.fd)])
    else:
        server.run()


def worker_argv(cfg: WorkerConfig) -> list[str]:
    """Command-line flags that rebuild `cfg` in `python -m edgegen.serve.worker` (used to spawn local workers)."""
    argv = []
    for f in dataclasses.fields(cfg):
        argv += [f"--{f.name.replace('_', '-')}", str(getattr(cfg, f.name))]
    return argv


def main(argv: list[str] | None = None) -> int:
    import sys

    import tyro

    cfg = tyro.cli(WorkerConfig, args=argv, prog="python -m edgegen.serve.worker",
                   description="One ASP worker serving a conditional digits DDPM.")
    try:
        serve_worker(cfg)
    except ConfigError as exc:
        print(f"edgegen serve worker: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
