"""Real local HTTP servers (a thread each) that misbehave the way hostile or broken hosts do.

``serve(mode)`` yields the URL of a server on 127.0.0.1 that answers every request with:

* ``"ok"``: ``payload`` with a correct ``Content-Length``;
* ``"chunked"``: ``payload`` with ``Transfer-Encoding: chunked`` (1 KiB chunks);
* ``"trickle_body"``: headers at once (announcing ``len(payload)`` bytes), then the body one byte
  every ``interval`` seconds (stops after ``max_seconds``: a client bounded per read only stays
  that long);
* ``"trickle_headers"``: the status line and headers themselves one byte every ``interval`` s;
* ``"endless"``: a 200 without ``Content-Length``, then bytes as fast as the client reads, until
  the client goes away or ``max_seconds`` pass;
* ``"huge_announced"``: ``Content-Length: 10**12`` then a few bytes and a stall.

``server.sent`` counts the body bytes the handler managed to send.
"""

from __future__ import annotations

import contextlib
import socketserver
import threading
import time
from collections.abc import Iterator


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str, payload: bytes, interval: float, max_seconds: float) -> None:
        self.mode, self.payload, self.interval, self.max_seconds = mode, payload, interval, max_seconds
        self.sent = 0
        self.requests = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/image.jpg"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def handle(self) -> None:
        srv = self.server
        srv.requests += 1
        while self.rfile.readline().strip():  # the request line and headers
            pass
        start = time.monotonic()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n"
        try:
            if srv.mode == "ok":
                self._send(head + b"Content-Length: %d\r\n\r\n" % len(srv.payload) + srv.payload)
                srv.sent += len(srv.payload)
            elif srv.mode == "chunked":
                self._send(head + b"Transfer-Encoding: chunked\r\n\r\n")
                for i in range(0, len(srv.payload), 1024):
                    part = srv.payload[i : i + 1024]
                    self._send(b"%x\r\n%s\r\n" % (len(part), part))
                    srv.sent += len(part)
                self._send(b"0\r\n\r\n")
            elif srv.mode == "trickle_body":
                self._send(head + b"Content-Length: %d\r\n\r\n" % len(srv.payload))
                for byte in srv.payload:
                    if time.monotonic() - start > srv.max_seconds:
                        break
                    self._send(bytes([byte]))
                    srv.sent += 1
                    time.sleep(srv.interval)
            elif srv.mode == "trickle_headers":
                for byte in head + b"X-Slow: " + b"a" * 10_000:
                    if time.monotonic() - start > srv.max_seconds:
                        break
                    self._send(bytes([byte]))
                    time.sleep(srv.interval)
            elif srv.mode == "endless":
                self._send(head + b"\r\n")
                block = b"\xff" * 65536
                while time.monotonic() - start < srv.max_seconds:
                    self._send(block)
                    srv.sent += len(block)
            elif srv.mode == "huge_announced":
                self._send(head + b"Content-Length: 1000000000000\r\n\r\n" + b"\xff" * 100)
                srv.sent += 100
                time.sleep(srv.max_seconds)
            else:
                raise ValueError(srv.mode)
        except OSError:  # the client went away (what a bounded client does)
            pass


@contextlib.contextmanager
def serve(mode: str, payload: bytes = b"", interval: float = 0.05, max_seconds: float = 15.0) -> Iterator[_Server]:
    """Run a misbehaving server in a thread for the duration of the block (see the module docstring)."""
    server = _Server(mode, payload, interval, max_seconds)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
