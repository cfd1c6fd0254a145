"""Running the app on uvicorn: a pre-bound socket (clear errors, port 0 works) and a thread runner."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from cover_id.errors import CoverIdError


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line error saying why it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CoverIdError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = "the port is already in use" if exc.errno == 98 else exc.strerror
        raise CoverIdError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


@dataclass
class RunningServer:
    """A uvicorn server running in a background thread (tests, benchmarks)."""

    server: Any
    thread: threading.Thread
    sock: socket.socket

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> RunningServer:
    """Start ``app`` on a real socket (port 0: a free one) and wait until it accepts requests."""
    import uvicorn

    sock = bind_socket(host, port)
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="cover-id-serve")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise CoverIdError("the server did not start")
        time.sleep(0.02)
    return RunningServer(server, thread, sock)
