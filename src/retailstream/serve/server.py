"""Running the app under uvicorn: in the foreground (`retailstream serve`) or in a thread.

The background form exists for tests and the demo, which need a real HTTP
server next to other work in the same process, on a free port, and a stop
that returns only once the port is released.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.serve.app import Publisher, create_app
from retailstream.views.store import ServingStore

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


def _config(
    app: Any, host: str, port: int, log_level: str, access_log: bool = False
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # Queries waiting for a consistency token hold a connection for a few seconds.
        timeout_keep_alive=10,
        timeout_graceful_shutdown=3,
        access_log=access_log,
    )


class _ForegroundServer(uvicorn.Server):
    """uvicorn's server, except that a stop signal is the normal end of serving.

    uvicorn re-raises the signal it shut down on, once done, so that the
    process ends as if interrupted; under asyncio that prints a traceback on
    every Ctrl-C. Here `run()` simply returns.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()


# How `retailstream serve --workers N` hands its settings to each worker process.
WORKER_SETTINGS = "RETAILSTREAM_SERVE_SETTINGS"


def app_from_environment() -> FastAPI:
    """A worker's app, from the settings its supervisor left in `WORKER_SETTINGS`."""
    return create_app(Settings.model_validate_json(os.environ[WORKER_SETTINGS]))


def run_server(
    settings: Settings, host: str | None = None, port: int | None = None, workers: int = 1
) -> None:
    """Serve the API and dashboard until Ctrl-C or SIGTERM; returns after a clean shutdown.

    `workers` > 1: as many processes, sharing one listening socket, each with its
    own store connections and Kafka producer: one Python process holds one core at
    most (its GIL), and a request's work is mostly Python."""
    host = host or settings.serve.host
    port = settings.serve.port if port is None else port
    try:
        if workers > 1:
            os.environ[WORKER_SETTINGS] = settings.model_dump_json()
            config = _config(
                f"{__name__}:app_from_environment", host, port, "info", settings.serve.access_log
            )
            config.factory, config.workers = True, workers
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            app = create_app(settings)
            _ForegroundServer(_config(app, host, port, "info", settings.serve.access_log)).run()
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return
    except OSError as exc:  # e.g. the port is taken
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc


class BackgroundServer:
    """A uvicorn server on a thread of this process; `stop()` shuts it down and joins it."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self._server = server
        self._socket = sock
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="retailstream-serve", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise UserError("the API server stopped while starting (see its log)")
            if time.monotonic() > deadline:
                self.stop()
                raise UserError(f"the API server did not start within {timeout_s:g}s")
            time.sleep(0.02)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Ask the server to exit, wait for it, and release the port. Safe to call twice."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout_s)
        self._socket.close()


def start_background(
    settings: Settings,
    port: int = 0,
    host: str | None = None,
    store: ServingStore | None = None,
    publisher: Publisher | None = None,
    log_level: str = "warning",
) -> tuple[BackgroundServer, str]:
    """Start the server on a thread; returns it and its base URL (`port=0`: a free port).

    The socket is bound here, before the thread starts, so the port is known
    and held from the start (no race for a "free" port with other processes).
    """
    host = host or settings.serve.host
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so
    # (without it every keep-alive answer waited ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(128)
    app = create_app(settings, store=store, publisher=publisher)
    server = BackgroundServer(uvicorn.Server(_config(app, host, port, log_level)), sock)
    server.start()
    return server, f"http://{host}:{server.port}"
