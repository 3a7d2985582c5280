"""gunicorn's threaded worker, made safe against slow clients: a request gets a thread only once it has arrived.

The stock `gthread` worker hands a connection to a thread as soon as its first bytes arrive, and the thread then
blocks reading the rest of the request. A client that sends half a request and stops (or trickles it a byte at a
time) holds that thread; `--threads` of them and every webhook waits. Seen: 110 such connections made every
webhook time out under `gunicorn -w 1 --threads 100`.

`BufferedThreadWorker` reads on the worker's event loop instead, without blocking, until the request's head
(up to the blank line) and a body of up to `BODY_BUFFER` bytes announced by Content-Length are in, and only then
gives the connection to a thread, with those bytes handed to gunicorn's parser as if it had read them itself.
A connection that does not complete its request within `REQUEST_SECONDS` of its first byte (or of being accepted)
is closed. So a slow client costs a file descriptor, not a thread. Kept-alive connections go through the same
path for each of their requests. Websocket upgrades are GET requests without a body: they get their thread as
soon as their head is in, and keep it for the life of the socket, as before (SOCKETIO_MAX_CONNECTIONS caps them).

Used by `python -m webapp` (server.py) and by the documented gunicorn command
(`-k webapp.httpworker.BufferedThreadWorker`). A buffering reverse proxy in front (docs/deploy.md) remains the
answer to thousands of slow connections: each still holds one of `worker_connections`.
"""

from __future__ import annotations

import contextlib
import errno
import re
import selectors
import time
from collections import deque
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

REQUEST_SECONDS = 20.0  # from accept (or a kept-alive connection's first new byte) to a complete request
HEAD_LIMIT = 64 * 1024  # a head longer than this goes to the parser as is (it refuses what exceeds its limits)
BODY_BUFFER = 1024 * 1024  # bodies up to this size are read before a thread is given; larger ones stream
_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r\n", re.IGNORECASE)


def request_complete(buf: bytes | bytearray) -> bool:
    """True when `buf` holds a whole request head and the body it announces (up to BODY_BUFFER), or when
    waiting for more would not help (a head over HEAD_LIMIT: the parser decides)."""
    end = buf.find(_HEAD_END)
    if end < 0:
        return len(buf) >= HEAD_LIMIT
    match = _CONTENT_LENGTH.search(buf, 0, end + 2)
    if match is None:  # no body, or a chunked one (streamed by the parser as usual)
        return True
    return len(buf) - (end + 4) >= min(int(match.group(1)), BODY_BUFFER)


class BufferedThreadWorker(ThreadWorker):
    """gthread, with each request read on the event loop before it is given a thread (see the module)."""

    def init_process(self) -> None:
        self._filling: deque[tuple[float, TConn]] = deque()  # deadlines in order; stale entries skipped
        super().init_process()

    # -- where connections enter: a new one, or a kept-alive one with a new request coming
    def accept(self, listener) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking from here
        self._start_filling(conn)

    def on_client_socket_readable(self, conn, client) -> None:
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_filling(conn)
        self._on_readable(conn, client)  # bytes are waiting: take them now rather than on the next turn

    def _start_filling(self, conn: TConn) -> None:
        conn.sock.setblocking(False)
        conn.pending_bytes = bytearray()
        conn.fill_deadline = time.monotonic() + REQUEST_SECONDS
        self._filling.append((conn.fill_deadline, conn))
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: TConn, _sock) -> None:
        if conn.fill_deadline is None:  # already handed over (the immediate read above did it)
            return
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before finishing its request
            self._drop(conn)
            return
        conn.pending_bytes += data
        if request_complete(conn.pending_bytes):
            self._stop_filling(conn)
            conn.data_ready = True  # the stock handle() must not wait for data in the thread
            self.enqueue_req(conn)

    def _stop_filling(self, conn: TConn) -> None:
        conn.fill_deadline = None
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _drop(self, conn: TConn) -> None:
        self._stop_filling(conn)
        conn.pending_bytes = None
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self._filling and self._filling[0][0] <= now:
            deadline, conn = self._filling.popleft()
            if conn.fill_deadline == deadline:  # still filling since that entry: too slow
                self._drop(conn)

    # -- in the thread: give the parser what the event loop read, then serve as gunicorn does
    def handle(self, conn):
        pending = getattr(conn, "pending_bytes", None)
        if pending:
            conn.pending_bytes = None
            conn.sock.setblocking(True)
            conn.init()  # creates the parser on a new connection; a no-op on a kept-alive one
            unreader = conn.parser.unreader
            earlier = unreader.take_buffered()  # read-ahead of the previous request comes first
            unreader.unread(earlier + bytes(pending))
        return super().handle(conn)
