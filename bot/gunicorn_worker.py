"""The gunicorn classes of `volbot serve`: a worker with a listening socket of its own, so
the kernel spreads connections over the workers — `LoopWorker` (the default: requests run
on the worker's event loop, one at a time) or `BalancedThreadWorker` (gunicorn's `gthread`
pool, with `--threads` above 1); and the logger, which builds no access line while the
access log is off.

Why: with one shared listener, the first worker to wake takes every connection that
arrives while it is awake, and a kept-alive connection stays with the worker that took it.
WeChat's (and nginx's) connections are long-lived, so one worker ended up serving almost
all of them on one core while the others idled (seen in bench/load.py: one worker at
100% CPU, the machine a third idle). With `reuse_port` each worker binds its own
SO_REUSEPORT socket and the kernel hashes each new connection to one of them.

Two details keep a reload or a stopping worker from dropping connections:

- the socket is bound only once the application is loaded: a fresh worker is never handed
  connections it cannot answer for the second or two its imports take;
- a worker that stops takes what is queued on its socket, then closes it at once (instead
  of keeping it open, unread, until its last request is done): from then on the kernel
  sends every new connection to the other workers. A connection that arrives in the
  microseconds between the last accept and the close is reset unless the kernel migrates
  it (`net.ipv4.tcp_migrate_req = 1`, set by deploy/sysctl/90-volbot.conf).

Binding after the load happens after gunicorn drops privileges (`user`/`group`): bind a
port above 1023 (nginx in front, as deploy/ does), not 80/443.

The kernel's hash is random, not even: 64 kept-alive connections over 3 workers came to
26, 21 and 17 in bench/load.py, and since a worker serves one request at a time, the one
with 26 fell behind first (p99 0.41 s on its connections against 0.15 s on the one with
17, at 400 pushes/s). So the workers also keep their shares even (`ConnectionShare`): a
worker holding more than its share of the open connections answers one kept-alive
connection's next request with `Connection: close`, and the client's new connection is
hashed anew.
"""

from __future__ import annotations

import errno
import math
import mmap
import os
import selectors
import time
from collections import deque
from functools import partial

from gunicorn import glogging, http, sock
from gunicorn.workers.gthread import TConn, ThreadWorker

from bot.gunicorn_conf import ready_dir


class ConnectionShare:
    """How many connections each worker holds, in memory the master maps before it forks,
    so that every worker (of every generation, across HUPs: this module is imported once,
    by the master) reads every other's.

    Only the master, which is single-threaded, hands slots out (when it builds a worker,
    before the fork) and takes them back (when the worker has exited: `child_exit` in
    bot/gunicorn_conf.py). A slot counts from the moment its worker listens until it stops
    accepting (`retire`). Each worker writes only its own slot; reading the others' without
    a lock is fine for a share that is checked again a moment later.
    """

    SLOTS = 64  # workers alive at once, old and new during a reload included
    CHECK_EVERY = 0.25  # seconds between two looks at the others (and at most one close)

    def __init__(self):
        self._map = mmap.mmap(-1, self.SLOTS * 16)  # anonymous and MAP_SHARED: kept across fork
        self._cells = memoryview(self._map).cast("q")  # per slot: pid (0 free, -1 not counted), connections
        self._next_check = 0.0

    def claim(self) -> int:
        """A free slot, reserved for a worker about to be forked (in the master)."""
        for slot in range(self.SLOTS):
            if self._cells[2 * slot] == 0:
                self._cells[2 * slot], self._cells[2 * slot + 1] = -1, 0
                return slot
        return -1  # more workers than slots: this one is not balanced

    def join(self, slot: int, pid: int) -> None:
        """The worker in `slot` listens: from now on it counts."""
        if slot >= 0:
            self._cells[2 * slot + 1], self._cells[2 * slot] = 0, pid

    def retire(self, slot: int) -> None:
        """The worker in `slot` stops accepting: it no longer counts (its slot is still its own)."""
        if slot >= 0:
            self._cells[2 * slot], self._cells[2 * slot + 1] = -1, 0

    def release(self, slot: int) -> None:
        """The worker in `slot` has exited (in the master)."""
        if slot >= 0:
            self._cells[2 * slot], self._cells[2 * slot + 1] = 0, 0

    def fair_share(self) -> int:
        """The most connections a listening worker should hold: the mean, rounded up."""
        cells, total, live = self._cells, 0, 0
        for slot in range(self.SLOTS):
            if cells[2 * slot] > 0:
                live += 1
                total += cells[2 * slot + 1]
        return math.ceil(total / live) if live else 0

    def over(self, slot: int, conns: int) -> bool:
        """Record that `slot` holds `conns` connections; True when it holds more than its
        share and should close one (at most once per `CHECK_EVERY`, so that the counts of
        the others catch up with the connections it has closed)."""
        if slot < 0:
            return False
        self._cells[2 * slot + 1] = conns
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.CHECK_EVERY
        return conns > self.fair_share()


SHARE = ConnectionShare()


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # In the master, before the fork (see ConnectionShare).
        self.share_slot = SHARE.claim() if self.cfg.reuse_port else -1

    def handle_request(self, req, conn):
        if self.alive and SHARE.over(self.share_slot, self.nr_conns):
            req.must_close = True  # answered with "Connection: close": the client reconnects
        return super().handle_request(req, conn)

    def init_process(self):
        if self.cfg.reuse_port:
            # The arbiter bound our socket right after the fork; nothing is loaded yet.
            for listener in self.sockets:
                listener.close()
            self.sockets = []
        super().init_process()

    def run(self):
        if self.cfg.reuse_port:
            self.sockets = sock.create_sockets(self.cfg, self.log)
            # The master has no socket of its own then: each worker says where it listens.
            self.log.info("Listening at: %s", ",".join(str(s) for s in self.sockets))
            SHARE.join(self.share_slot, os.getpid())
        # Loaded and listening: `volbot serve` may now stop the workers this one replaces.
        ready_dir().mkdir(parents=True, exist_ok=True)
        (ready_dir() / str(os.getpid())).touch()
        super().run()

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled)
        if enabled or self.alive or not self.cfg.reuse_port:
            return
        # Stopping for good: drain the queue, then leave the kernel's balancing group.
        SHARE.retire(self.share_slot)
        for listener in self.sockets:
            while True:
                before = self.nr_conns
                self.accept(listener)  # non-blocking: an empty queue takes nothing
                if self.nr_conns == before:
                    break
            listener.close()
        self.sockets = []


class LoopWorker(BalancedThreadWorker):
    """gthread's event loop (kept-alive connections, timeouts, graceful stop, a socket per
    worker) without its thread pool: a connection that becomes readable is served right
    there, on the loop's thread, and goes back to the poller.

    Why: a push is a few milliseconds of Python, and gthread hands each request from the
    poller to a pool thread and back through a pipe — four thread switches and a dozen
    system calls per request, on top of the pipeline's own hand-off to its turn thread
    (which keeps the hard reply deadline, bot/pipeline.py). Measured with bench/load.py's
    bare app at 500 pushes/s on 2 cores: 0.64-0.72 ms of web CPU per push here against
    0.94-1.13 ms under gthread.

    A worker serves one request at a time, so concurrency is the number of workers (the
    default is one per core plus one, bot/gunicorn_conf.py). Reading a request (line,
    headers and body) has `READ_TIMEOUT` seconds in all: a client that stops
    or trickles half-way through ties the worker up for that long at most, and is then
    closed (werkzeug answers a body that stops short with 400). nginx in front (deploy/)
    buffers whole requests before it passes them on, so behind it this never happens.
    """

    READ_TIMEOUT = 2.0
    DRAIN_TIMEOUT = 0.2

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ready: deque = deque()
        self._serving = False

    @classmethod
    def check_config(cls, cfg, log):
        if cfg.is_ssl:  # TConn would wrap our timed socket, which is no real socket
            raise SystemExit("LoopWorker serves plain HTTP: terminate TLS in nginx (deploy/) or use --threads 2")
        super().check_config(cfg, log)

    def get_thread_pool(self):
        # gthread shuts its pool down on exit; this one never gets work, so never a thread.
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(max_workers=1)

    def accept(self, listener):
        """A new connection waits in the poller for its first bytes (gthread would block a
        pool thread on it)."""
        try:
            client, addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, _TimedSocket(client), addr, listener.getsockname())
        # Its first request has as long as a kept-alive connection's next one (at least the
        # read time-out: with keep-alive off, 0 would close it before it could speak).
        conn.timeout = time.monotonic() + max(self.cfg.keepalive, self.READ_TIMEOUT)
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def enqueue_req(self, conn):
        """Serve `conn` now. A request already read ahead (pipelined) comes back here from
        `finish_request`: queued, not recursed into."""
        self._ready.append(conn)
        if self._serving:
            return
        self._serving = True
        try:
            while self._ready:
                conn = self._ready.popleft()
                conn.data_ready = True
                keepalive = self.handle(conn)
                if not keepalive:
                    # gthread's graceful close lingers for the client's FIN: here it takes
                    # what has arrived and waits for nothing, the loop has others to serve.
                    conn.sock.deadline = 0.0
                self.finish_request(conn, _Served(keepalive))
        finally:
            self._serving = False

    def handle(self, conn):
        """One HTTP/1.1 request on `conn`: True to keep the connection for the next one."""
        req = None
        conn.sock.deadline = time.monotonic() + self.READ_TIMEOUT
        try:
            conn.init()
            req = next(conn.parser)
            if not req:
                return False
            if not self.handle_request(req, conn):
                return False
            # A body the app left unread is drained before the next request, in time of its
            # own (the turn may have used up the first), short: a client that sent its whole
            # body has it waiting in the socket already.
            conn.sock.deadline = time.monotonic() + self.DRAIN_TIMEOUT
            return bool(conn.parser.finish_body(deadline=conn.sock.deadline))
        except (http.errors.NoMoreData, StopIteration):
            self.log.debug("Closing connection.")
        except (TimeoutError, BlockingIOError):
            self.log.debug("Request not received within %s s: connection closed.", self.READ_TIMEOUT)
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as e:  # noqa: BLE001 - a bad request: gunicorn answers it (400, ...)
            self.handle_error(req, conn.sock, conn.client, e)
        return False


class _TimedSocket:
    """A client socket whose reads share one deadline (set per request by `LoopWorker`):
    a read waits for data until then at most; past it, a read takes only what has already
    arrived (BlockingIOError when nothing has)."""

    __slots__ = ("_sock", "deadline")

    def __init__(self, sock):
        self._sock = sock
        self.deadline = 0.0  # no request being read: a read waits for nothing

    def recv(self, size: int) -> bytes:
        self._sock.settimeout(max(0.0, self.deadline - time.monotonic()))
        return self._sock.recv(size)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _Served:
    """The outcome of a request served inline, in the shape `finish_request` reads from
    gthread's futures."""

    def __init__(self, keepalive: bool):
        self.keepalive = keepalive

    def cancelled(self) -> bool:
        return False

    def result(self) -> bool:
        return self.keepalive


class Logger(glogging.Logger):
    """gunicorn's logger, but an access line is built only when the access log is on.
    gunicorn builds it whenever a logging configuration is given (ours always is) and
    leaves it to the logger's level: per request, a dozen atoms formatted for nothing."""

    def _compute_access_log_enabled(self):
        return bool(self.cfg.accesslog)
