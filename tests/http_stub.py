"""A stub HTTP server on a free 127.0.0.1 port, for tests that talk to a real socket (the real
client code, its retries and errors) without a real service behind it."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

Server = TypeVar("Server", bound=ThreadingHTTPServer)
#: Port 0: the OS picks a free port, so parallel runs and a busy machine do not collide.
LOOPBACK = ("127.0.0.1", 0)


class QuietHandler(BaseHTTPRequestHandler):
    """A handler without the access log on stderr: the tests assert on what the server recorded."""

    def log_message(self, *args: Any) -> None:
        """Nothing: see the class."""


def origin(server: ThreadingHTTPServer) -> str:
    """`http://127.0.0.1:PORT` of a server `serving` started."""
    return f"http://127.0.0.1:{server.server_address[1]}"


@contextmanager
def serving(
    handler: Callable[..., socketserver.BaseRequestHandler], server_class: type[Server] = ThreadingHTTPServer
) -> Iterator[Server]:
    """A `server_class` on a free loopback port, answering from a daemon thread; shut down and its
    socket closed when the block ends, even when the test fails, so no port or thread outlives it."""
    server = server_class(LOOPBACK, handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
