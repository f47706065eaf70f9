"""HTTP pieces shared by the gateway and the ASP workers: token auth, bounded JSON bodies, request validation.

Every endpoint of both servers requires the shared token, sent as ``Authorization: Bearer <token>`` (or, for a
browser opening the status page, as ``?token=<token>``). Bad input gets one 4xx with a message naming the field and
its allowed range: 401 no/wrong token, 400 malformed JSON, 413 body too large, 422 a field out of range or unknown.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgegen.config import ConfigError

if TYPE_CHECKING:  # fastapi is the `serve` extra: imported only when a server runs
    from fastapi import Request

TOKEN_ENV = "EDGEGEN_SERVE_TOKEN"
NUM_CLASSES = 10  # digit labels 0..9 of the conditional DDPMs


class HTTPError(Exception):
    """An error answered with `status` and JSON {"detail": message}."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}

    def response(self):
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": self.message}, status_code=self.status, headers=self.headers)


def read_token(token_env: str = TOKEN_ENV, generate: bool = False) -> str:
    """The service token from the environment variable `token_env` (a token on the command line would be visible
    to every user in `ps`). With `generate`, a missing token is replaced by a fresh random one."""
    token = os.environ.get(token_env, "")
    if not token and generate:
        token = secrets.token_urlsafe(24)
        os.environ[token_env] = token
    if not token:
        raise ConfigError(f"no service token: set the environment variable {token_env}")
    return token


def token_app(title: str, lifespan, token: str):
    """A FastAPI app (no docs pages) whose every request must carry `token` (``check_token``) and whose
    ``HTTPError``s become JSON error responses."""
    from fastapi import FastAPI
    from fastapi import Request as FastAPIRequest

    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def auth(request: FastAPIRequest, call_next):
        try:
            check_token(request, token)
        except HTTPError as err:
            return err.response()
        return await call_next(request)

    @app.exception_handler(HTTPError)
    async def http_error(request: FastAPIRequest, err: HTTPError):
        return err.response()

    return app


def check_token(request: Request, token: str) -> None:
    """Raise 401 unless the request carries the token (Bearer header or ?token=); constant-time comparison."""
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else request.query_params.get("token", "")
    if not given:
        raise HTTPError(401, "missing token: send 'Authorization: Bearer <token>'",
                        {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPError(401, "invalid token", {"WWW-Authenticate": "Bearer"})


async def read_json(request: Request, max_body_bytes: int) -> dict:
    """The request body as a JSON object: 413 when it exceeds `max_body_bytes` (checked on Content-Length before
    reading and again while streaming), 400 when it is not valid JSON or not an object."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body_bytes:
        raise HTTPError(413, f"request body of {length} bytes exceeds the limit of {max_body_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            raise HTTPError(413, f"request body exceeds the limit of {max_body_bytes} bytes")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPError(400, f"the JSON body must be an object, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class GenerateRequest:
    """A validated request: digit class `condition`, denoising `steps`, optional sampler `seed`."""

    condition: int
    steps: int
    seed: int | None = None


def _int_field(data: dict, name: str, low: int, high: int, required: bool = True) -> int | None:
    if name not in data:
        if required:
            raise HTTPError(422, f"missing field '{name}' (an integer in [{low}, {high}])")
        return None
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise HTTPError(422, f"'{name}' must be an integer in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise HTTPError(422, f"'{name}' must be in [{low}, {high}], got {value}")
    return value


def parse_generate(data: dict, min_steps: int, max_steps: int, extra: tuple[str, ...] = ()) -> GenerateRequest:
    """Validate {condition, steps[, seed]} (plus the tolerated keys `extra`); 422 names the bad field."""
    unknown = sorted(set(data) - {"condition", "steps", "seed", *extra})
    if unknown:
        raise HTTPError(422, f"unknown field(s) {unknown}; allowed: condition, steps, seed")
    condition = _int_field(data, "condition", 0, NUM_CLASSES - 1)
    steps = _int_field(data, "steps", min_steps, max_steps)
    seed = _int_field(data, "seed", 0, 2**63 - 1, required=False)
    return GenerateRequest(condition, steps, seed)


def exit_zero_after_drain() -> None:
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; make that a clean exit (code 0), since every
    request in flight was answered by then."""

    def _exit(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
