"""A gateway for tests: a TCP proxy that ends requests at a fixed time, as
load balancers and platform routers do (Heroku's router at 30 s, AWS API
Gateway at 29 s...)."""
from __future__ import annotations

import contextlib
import re
import selectors
import socket
import struct
import threading
import time
import typing as t
from urllib.parse import urlsplit

#: The request line of an HTTP/1.x request, at the start of a chunk.
_REQUEST_LINE = re.compile(rb"(?:^|\r\n)((?:GET|HEAD|POST|PUT|PATCH|DELETE) \S+) HTTP/1\.[01]\r\n")
_GATEWAY_TIMEOUT = (b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: 15\r\nConnection: close\r\n\r\nGateway Timeout")


class Gateway:
    """Forwards connections to ``upstream``, and ends any request whose
    answer has not started ``limit`` seconds after it was sent: with a
    ``504 Gateway Timeout`` (``mode="504"``) or by resetting the connection
    (``mode="reset"``).

    Records each request line it forwards (``"GET /jobs/x?wait=2"``) in
    :attr:`requests`, and counts its cuts in :attr:`cuts`. Thread-safe.
    """

    def __init__(self, upstream: str, *, limit: float, mode: str = "504") -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.limit = limit
        self.mode = mode
        self._lock = threading.Lock()
        self.requests: list[str] = []
        self.cuts = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn(self._accept)

    def close(self) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(5)
        self._listener.close()

    def lines(self, prefix: str) -> list[str]:
        """The request lines seen that start with ``prefix``."""
        with self._lock:
            return [line for line in self.requests if line.startswith(prefix)]

    def _spawn(self, target: t.Callable[..., None], *args: t.Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._spawn(self._pipe, client)

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._upstream)
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ)
        selector.register(upstream, selectors.EVENT_READ)
        sent_at: float | None = None  # a request waiting for its answer since
        try:
            while not self._stop.is_set():
                timeout = (0.2 if sent_at is None
                           else max(0.0, sent_at + self.limit - time.monotonic()))
                events = selector.select(min(timeout, 0.2))
                if sent_at is not None and time.monotonic() >= sent_at + self.limit:
                    self._cut(client)
                    return
                for key, _ in events:
                    sock = t.cast(socket.socket, key.fileobj)
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        lines = [m.decode() for m in _REQUEST_LINE.findall(data)]
                        if lines:
                            sent_at = time.monotonic()
                            with self._lock:
                                self.requests.extend(lines)
                        upstream.sendall(data)
                    else:
                        sent_at = None
                        client.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            upstream.close()
            client.close()

    def _cut(self, client: socket.socket) -> None:
        with self._lock:
            self.cuts += 1
        if self.mode == "reset":  # RST instead of FIN: SO_LINGER with a zero timeout
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            client.sendall(_GATEWAY_TIMEOUT)


@contextlib.contextmanager
def gateway(upstream: str, *, limit: float, mode: str = "504") -> t.Iterator[Gateway]:
    """A running :class:`Gateway` in front of ``upstream``."""
    gw = Gateway(upstream, limit=limit, mode=mode)
    gw.start()
    try:
        yield gw
    finally:
        gw.close()
