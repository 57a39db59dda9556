"""The worker's HTTP endpoints: a live streaming page, Prometheus metrics, progress, liveness
and readiness.

A deliberately small HTTP/1.1 server on asyncio streams (no extra dependency), GET and HEAD
only, one request per connection (`Connection: close`):

    GET /          the streaming page (weir/service/web/index.html): per query its input and
                   processing rates, batch duration by phase, watermark delay, state rows and
                   lag over the recent rounds, drawn from /progress in the browser
    GET /static/<name>  the page's files (weir/service/web/, uPlot vendored); 404 for any
                   other name
    GET /metrics   Prometheus text exposition of `weir.service.metrics.REGISTRY`
    GET /progress  JSON: per query its ids, status, last progress record and the last N
                   (`?n=`, default 10, at most 100) of its recent ones (see `Status.progress`)
    GET /healthz   200 "ok" while the worker's event loop serves requests
    GET /readyz    200 "ready" once every agent has started, holds an assignment and has opened
                   (restored) a task for each assigned partition; 503 with the reasons otherwise

What it serves comes from a `weir.service.status.Status` (the worker implements it). It
binds 127.0.0.1 unless another host is passed explicitly: `WebServer(status, port,
host="0.0.0.0")`. `serve` is what `Worker.run` calls with the `web_port` and `web_host`
settings (`WEIR_WEB_PORT`, `WEIR_WEB_HOST`; the host defaults to 127.0.0.1), so exposing the
endpoints beyond the loopback interface (as in a Kubernetes pod, where probes and Prometheus
use the pod IP) is an explicit operator choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from weir.service import metrics
from weir.service.status import MAX_PROGRESS_RECORDS

if TYPE_CHECKING:
    from weir.service.status import Status

log = logging.getLogger("weir.http")

DEFAULT_HOST = "127.0.0.1"
"""Loopback: the endpoints are local unless a host is given explicitly."""
HOST_ENV = "WEIR_WEB_HOST"
"""Environment variable of the `web_host` setting (the bind host)."""
DEFAULT_PROGRESS_RECORDS = 10
"""Recent progress records per agent in /progress when `?n=` is not given."""

_REQUEST_TIMEOUT_S = 10.0
_MAX_HEADERS = 100
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_STATIC_PREFIX = "/static/"
_WEB = resources.files("weir.service").joinpath("web")
_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": _TEXT,
}
"""The page's files are served by suffix; a file of any other suffix is not served."""
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

Response = tuple[int, str, bytes]
"""(status, content type, body)."""


class WebServer:
    """The HTTP endpoints of one worker.

    Contract: `start` binds `host:port` (port 0: any free port, then `port` tells which) and
    serves until `stop`; handlers only read the status, so serving never
    changes what the worker does. `stop` closes the listener and any open connection.
    """

    def __init__(self, status: Status, port: int = 0, host: str = DEFAULT_HOST) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"web port must be in 0..65535, got {port}")
        self.status = status
        self.host = host
        self.requested_port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._routes: dict[str, Callable[[dict[str, list[str]]], Response]] = {
            "/": self._index,
            "/metrics": self._metrics,
            "/progress": self._progress,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
        }

    @property
    def port(self) -> int:
        """The bound port (the chosen one when started with port 0). Raises if not started."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("web server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL of the endpoints, e.g. http://127.0.0.1:8000."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving. Raises OSError when the address is in use."""
        if self._server is not None:
            raise RuntimeError("web server already started")
        self._server = await asyncio.start_server(self._handle, self.host, self.requested_port)
        log.info("serving / /metrics /progress /healthz /readyz on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and close open connections. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._connections):
            writer.close()
        await server.wait_closed()

    # -- protocol --------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            try:
                async with asyncio.timeout(_REQUEST_TIMEOUT_S):
                    method, target = await self._read_request(reader)
            except TimeoutError:
                await self._send(writer, "GET", (408, _TEXT, b"request timeout\n"))
                return
            except ValueError as exc:
                await self._send(writer, "GET", (400, _TEXT, f"{exc}\n".encode()))
                return
            await self._send(writer, method, self._respond(method, target))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
        """Read the request line and headers (bodies are not read: GET/HEAD only)."""
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise ValueError("request line too long") from None
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise ValueError("malformed request line")
        for _ in range(_MAX_HEADERS):
            try:
                header = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError:
                raise ValueError("header too long") from None
            if header == b"\r\n":
                return parts[0], parts[1]
        raise ValueError("too many headers")

    def _respond(self, method: str, target: str) -> Response:
        url = urlsplit(target)
        route = self._routes.get(url.path)
        static = url.path.startswith(_STATIC_PREFIX)
        if route is None and not static:
            return 404, _TEXT, b"not found\n"
        if method not in ("GET", "HEAD"):
            return 405, _TEXT, b"method not allowed\n"
        try:
            if route is None:
                return _static(url.path[len(_STATIC_PREFIX) :])
            return route(parse_qs(url.query))
        except Exception:
            log.exception("error serving %s", url.path)
            return 500, _TEXT, b"internal error\n"

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, method: str, response: Response) -> None:
        status, content_type, body = response
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        writer.write(head if method == "HEAD" else head + body)
        await writer.drain()

    # -- endpoints -------------------------------------------------------------------------
    def _metrics(self, query: dict[str, list[str]]) -> Response:
        return 200, CONTENT_TYPE_LATEST, generate_latest(metrics.REGISTRY)

    def _progress(self, query: dict[str, list[str]]) -> Response:
        raw = query.get("n", [str(DEFAULT_PROGRESS_RECORDS)])[-1]
        try:
            n = int(raw)
        except ValueError:
            return 400, _TEXT, f"n must be an integer, got {raw!r}\n".encode()
        body = orjson.dumps(self.status.progress(max(0, min(n, MAX_PROGRESS_RECORDS))), default=str)
        return 200, _JSON, body

    def _index(self, query: dict[str, list[str]]) -> Response:
        return _static("index.html")

    def _healthz(self, query: dict[str, list[str]]) -> Response:
        return 200, _TEXT, b"ok\n"

    def _readyz(self, query: dict[str, list[str]]) -> Response:
        ready, states = self.status.readiness()
        lines = ["ready" if ready else "not ready"]
        lines += [f"{name}: {state}" for name, state in sorted(states.items())]
        return (200 if ready else 503), _TEXT, ("\n".join(lines) + "\n").encode()


def _static(name: str) -> Response:
    """A file of the page by its bare name; 404 unless it is one of the files in web/ with a
    served suffix (so no path leads outside that folder)."""
    content_type = _STATIC_TYPES.get(PurePosixPath(name).suffix)
    files = {f.name: f for f in _WEB.iterdir() if f.is_file()}
    if content_type is None or name not in files:
        return 404, _TEXT, b"not found\n"
    return 200, content_type, files[name].read_bytes()


async def serve(status: Status, port: int | None, host: str = DEFAULT_HOST) -> WebServer | None:
    """Start the endpoints of `status` on `host:port` (port None: no server, returns None).
    The caller stops the returned server."""
    if port is None:
        return None
    server = WebServer(status, port, host=host)
    await server.start()
    return server


__all__ = [
    "DEFAULT_HOST",
    "HOST_ENV",
    "WebServer",
    "serve",
]
