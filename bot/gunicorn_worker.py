"""The gunicorn classes of `volbot serve`: a worker with a listening socket of its own, so
the kernel spreads connections over the workers — `BufferedWorker` (the default: requests
are read whole on the worker's event loop, then served one at a time, and refused when
they waited too long) or `BalancedThreadWorker` (gunicorn's `gthread` pool, with `--threads`
above 1: no protection from slow clients, use it behind nginx only); and the logger, which builds no access line while the
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
import ipaddress
import math
import mmap
import os
import resource
import selectors
import socket
import struct
import time
from collections import deque
from datetime import datetime

from gunicorn import glogging, http, sock, util
from gunicorn.http import wsgi
from gunicorn.workers import base
from gunicorn.workers.gthread import ThreadWorker

from bot.config import load_config
from bot.serving import ready_dir


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


class _OwnSocket:
    """What both worker classes do for a socket of their own (`reuse_port`): bind it only
    once the app is loaded, count in `SHARE` from then on, and say so in `ready_dir()`."""

    def init_process(self):
        if self.cfg.reuse_port:
            # The arbiter bound our socket right after the fork; nothing is loaded yet.
            for listener in self.sockets:
                listener.close()
            self.sockets = []
        super().init_process()

    def listen(self) -> None:
        if self.cfg.reuse_port:
            self.sockets = sock.create_sockets(self.cfg, self.log)
            # The master has no socket of its own then: each worker says where it listens.
            self.log.info("Listening at: %s", ",".join(str(s) for s in self.sockets))
            SHARE.join(self.share_slot, os.getpid())

    def say_ready(self) -> None:
        """Loaded and listening: `volbot serve` may now stop the workers this one replaces."""
        folder = ready_dir(load_config())
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(os.getpid())).touch()


class BalancedThreadWorker(_OwnSocket, ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # In the master, before the fork (see ConnectionShare).
        self.share_slot = SHARE.claim() if self.cfg.reuse_port else -1

    def handle_request(self, req, conn):
        if self.alive and SHARE.over(self.share_slot, self.nr_conns):
            req.must_close = True  # answered with "Connection: close": the client reconnects
        return super().handle_request(req, conn)

    def run(self):
        self.listen()
        self.say_ready()
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


class BufferedWorker(_OwnSocket, base.Worker):
    """The default worker: it reads each request whole, on its event loop, before the app
    sees it, then serves the complete requests one at a time, oldest first, and refuses
    unread (503) any that waited longer than `QUEUE_BUDGET` since its last byte arrived.

    Why our own loop rather than one of gunicorn's workers: each of them hands a request to
    the application (a thread, a greenlet, the process) as soon as its first bytes arrive,
    and the app's thread then waits for the rest. gthread waits for the first byte in the
    poller and then reads line, headers and body in a pool thread (gunicorn 27: `handle`):
    50 clients trickling one byte every 0.5 s held every worker and normal users waited up
    to 15 s (issue 28). gevent would make a slow client cost a greenlet only, but it must
    patch the threads the pipeline keeps its reply deadline with, and psycopg2 and redis-py
    would need green drivers. waitress buffers whole requests, but in one process: on a
    GIL that is one core for the whole site. An asyncio server (uvicorn) with a WSGI
    adapter reads the body in the WSGI thread again. Here a slow client costs a socket and
    its bytes, nothing else, and the app is never entered for a request not yet whole.

    Why the budget: every worker used to read the next request only when it was free, so
    under more load than the machine carries the queue was in the kernel's socket buffers,
    where no deadline can see it (bench/load.py: p99 21.9 s while the app answered each in
    0.1 s). This loop takes every readable byte and every pending connection between two
    requests (one `epoll_wait` of no time), and a request's wait is measured from its arrival
    on the host: the kernel's receive stamp of its last bytes (so the time in the accept
    backlog and the socket buffer counts), or, from a trusted proxy (`forwarded_allow_ips`),
    the `X-Request-Start: t=<epoch seconds>` nginx adds when it has the request (deploy/nginx),
    whichever is earlier. A request that has already waited longer than it may costs a 503
    — no parsing, no app, no dedup claim — so WeChat's retry of it is served as a first
    delivery would be. The excess is counted (`volbot_shed_total{path,reason}`) and the
    wait of the served ones observed (`volbot_queue_seconds`). The app's reply deadline
    counts from the same arrival (`volbot.arrived` in the environ, bot/pipeline.py).

    How long it may wait: `QUEUE_BUDGET` (2 s) since it reached the host, always (reason
    `late`); while the queue empties now and then that is all — a burst is absorbed whole.
    Once the queue has not been empty for a whole budget the host is over capacity, not in a
    burst, and from then on a request may also wait only an eighth of the budget
    (`OVERLOAD_SHARE`; 0.25 s) since it reached this worker's socket (`overload_wait`, reason
    `overload`; the time in a proxy counts towards the budget only, or a slow proxy would
    have every request refused by a worker with time for it): one that would wait longer
    (the requests ahead of it times the mean service time) is refused as soon as it is
    whole, one at the head that waited longer is refused there. That lasts until a whole
    budget passes with no such refusal (the load is back under capacity): ending it at the
    first moment the queue was empty let the queue grow to the budget again every few
    seconds (behind nginx, 503s after 1.8-2 s upstream were the commonest).

    Why short: a standing queue of 2 s made every answered push 2 s late and held a sender's
    connection that long for every push, answered or refused, so a sender with a bounded
    pool (WeChat's, nginx's) got fewer answers a second, not more (bench/drills/overload.py:
    goodput 498/s = 1,000 connections / 2 s against a capacity of 1,284/s). This is the
    controlled-delay queue of Facebook's "Fail at scale" (CoDel applied to a request queue),
    with the budget as its interval. A client with a fixed number of requests out (a
    benchmark's closed loop) keeps the queue from emptying too; its waits stay far under the
    short one unless the machine is starved (bench/README.md, webhook.py).

    Connections: beyond `worker_connections` a worker still accepts (a connection left in
    the kernel's backlog is one nobody refuses, and a full backlog drops SYNs, which the
    client retries after 1 s, then 3 s), but answers the first request of each connection
    taken over the limit with a 503 and a close (reason `connections`). The worker raises
    its soft limit of open files to the hard one; at that limit it stops accepting for a
    second (`sweep`) and the backlog holds the rest.

    What it costs: about 250 lines of HTTP framing and connection handling of our own
    (gunicorn still parses every request and writes every answer); pipelined requests are
    served in order, one per pass of the loop; a request is limited to `MAX_REQUEST` bytes
    (413 beyond), its head to gunicorn's limits, and it must arrive whole within
    `READ_TIMEOUT` seconds of its first byte. Plain HTTP only (TLS ends in nginx, deploy/).
    """

    MAX_REQUEST = 1 << 20
    OVERLOAD_SHARE = 8  # while the queue stands, a request may wait budget / this (see overload_wait)
    READ_TIMEOUT = 30.0  # a request not whole by then is given up (408)
    WRITE_TIMEOUT = 10.0  # an answer the client does not take by then is given up
    IDLE_FIRST = 5.0  # seconds a connection may stay silent at least, keep-alive or not
    SWEEP_EVERY = 1.0  # seconds between two looks for idle and stalled connections
    STOP_LINGER = 2.0  # a stopping worker keeps kept-alive connections this long (see gthread)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # In the master, before the fork (see ConnectionShare).
        self.share_slot = SHARE.claim() if self.cfg.reuse_port else -1
        self.conns: dict[int, _Conn] = {}
        self.ready: deque[_Conn] = deque()
        self.budget = 0.0
        self.poller = None
        self.accepting = False
        self.clock_offset = 0.0
        self.busy_since = 0.0  # the queue has not been empty since this arrival (see overload_wait)
        self.overloaded_until = 0.0  # the short wait applies until then (see overload_wait)
        self.service = 0.0  # mean seconds a served request takes (moving average)
        self.trusted: dict[str, bool] = {}  # peer address: may it set X-Request-Start (see from_trusted)

    @classmethod
    def check_config(cls, cfg, log):
        if cfg.is_ssl:
            raise SystemExit("BufferedWorker serves plain HTTP: terminate TLS in nginx (deploy/) or use --threads 2")

    def run(self):
        from bot import observability
        from bot.config import load_config

        self.budget = load_config().queue_budget
        self.shed_count, self.queue_seconds = observability.SHED, observability.QUEUE_SECONDS
        _raise_open_files_limit()
        self.listen()
        self.poller = selectors.DefaultSelector()
        self.set_accepting(True)
        self.say_ready()
        swept = time.monotonic()
        while self.alive:
            self.notify()
            # With requests waiting, only a look (no wait) between two of them.
            self.poll(0.0 if self.ready else self.SWEEP_EVERY)
            short = self.shed_expired()
            if self.ready:
                self.serve(self.ready.popleft(), short)
            now = time.monotonic()
            if now - swept >= self.SWEEP_EVERY:
                swept = now
                self.sweep(now)
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
        self.stop()

    # ---- connections ----------------------------------------------------------------------

    def set_accepting(self, enabled: bool) -> None:
        if enabled == self.accepting or not self.sockets:
            return
        for listener in self.sockets:
            if enabled:
                listener.setblocking(False)
                if listener.family in (socket.AF_INET, socket.AF_INET6):
                    # Each read says when its bytes arrived; accepted sockets inherit it.
                    listener.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self.poller.register(listener, selectors.EVENT_READ, None)
            else:
                self.poller.unregister(listener)
        self.accepting = enabled

    def poll(self, timeout: float) -> None:
        try:
            events = self.poller.select(timeout)
        except InterruptedError:
            return
        now = time.monotonic()
        self.clock_offset = time.time() - now  # the kernel stamps arrivals on the wall clock
        for key, _ in events:
            if key.data is None:
                self.accept(key.fileobj, now)
            else:
                self.read(key.data, now)

    def accept(self, listener, now: float) -> None:
        """Every connection waiting on `listener`; those beyond `worker_connections` are
        marked, to be refused at their first request (see `queue`)."""
        while True:
            try:
                client, addr = listener.accept()
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    self.set_accepting(False)  # out of files: the backlog holds the rest (see sweep)
                    return
                if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            client.setblocking(False)
            conn = _Conn(client, addr, listener.getsockname(), now)
            conn.over = len(self.conns) >= self.cfg.worker_connections
            self.conns[client.fileno()] = conn
            self.poller.register(client, selectors.EVENT_READ, conn)

    def read(self, conn: _Conn, now: float) -> None:
        try:
            chunk, stamps, _, _ = conn.sock.recvmsg(65536, _STAMP_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk, stamps = b"", ()
        if stamps:  # when the last of these bytes reached the host (SO_TIMESTAMPNS), not now
            sec, nsec = _TIMESPEC.unpack_from(stamps[0][2])
            now = min(now, sec + nsec / 1e9 - self.clock_offset)
        if not chunk:  # the client is done sending; a request of its already whole is still answered
            conn.eof = True
            self.poller.unregister(conn.sock)
            if not conn.queued:
                self.close(conn)
            return
        if not conn.buf:
            conn.started = now
        conn.buf += chunk
        if conn.queued:
            if len(conn.buf) > 2 * self.MAX_REQUEST:  # pipelining far ahead: wait for its turn
                self.poller.unregister(conn.sock)
                conn.paused = True
            return
        self.frame(conn, now)

    def frame(self, conn: _Conn, now: float) -> None:
        """Queue `conn` if its buffer holds a whole request (or one gunicorn will refuse)."""
        buf = conn.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.cfg.limit_request_line + self.cfg.limit_request_field_size * (
                    self.cfg.limit_request_fields + 1):
                self.queue(conn, len(buf), now, now)  # gunicorn's parser answers it (400/431)
            return
        length, chunked, expect, start = 0, False, False, None
        for line in bytes(buf[:end]).lower().split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip(), value.strip()
            if name == b"content-length":
                length = int(value) if value.isdigit() else 0  # a bad one: gunicorn refuses it
            elif name == b"transfer-encoding":
                chunked = value.endswith(b"chunked")
            elif name == b"expect":
                expect = value == b"100-continue"
            elif name == b"x-request-start":
                start = value
        total = _chunked_end(buf, end + 4) if chunked else end + 4 + length
        if (total or len(buf)) > self.MAX_REQUEST or length > self.MAX_REQUEST:
            self.refuse(conn, b"413 Content Too Large")
        elif total is not None and len(buf) >= total:
            arrived = now
            if start is not None and self.from_trusted(conn):
                arrived = min(now, _request_start(start, now, self.clock_offset))
            self.queue(conn, total, now, arrived)
        elif expect and not conn.continued:
            conn.continued = True  # the client waits for this before it sends the body
            self.send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")

    def from_trusted(self, conn: _Conn) -> bool:
        """Whether `conn` comes from a proxy whose headers count (as gunicorn decides for
        X-Forwarded-*): a unix socket, or a peer in `forwarded_allow_ips`."""
        if not isinstance(conn.addr, tuple):
            return True
        peer = conn.addr[0]
        if peer not in self.trusted:
            if len(self.trusted) > 1024:
                self.trusted.clear()
            try:
                ip = ipaddress.ip_address(peer)
            except ValueError:
                ip = None
            self.trusted[peer] = "*" in self.cfg.forwarded_allow_ips or (
                ip is not None and any(ip in net for net in self.cfg.forwarded_allow_networks()))
        return self.trusted[peer]

    def queue(self, conn: _Conn, size: int, now: float, arrived: float) -> None:
        """Queue a whole request that reached this socket at `now` (the kernel's stamp) and
        the host at `arrived` (earlier behind a proxy) — or refuse it at once."""
        if conn.over:
            conn.over = False
            if len(self.conns) > self.cfg.worker_connections:  # still over: refused, and closed
                self.shed_count.labels(_path_kind(bytes(conn.buf[:64])), "connections").inc()
                self.refuse(conn, b"503 Service Unavailable")
                return
        if not self.ready or now < self.busy_since:  # the earliest arrival since it was last empty
            self.busy_since = now
        elif self.budget:
            short = self.overload_wait(time.monotonic())
            if short is not None and len(self.ready) * self.service > short:  # would wait too long: at once
                data = bytes(conn.buf[:size])
                if not data.startswith(_NEVER_SHED):
                    del conn.buf[:size]
                    self.shed(conn, data, "overload", now)
                    return
        conn.size, conn.queued, conn.received, conn.arrived = size, True, now, arrived
        self.ready.append(conn)

    def sweep(self, now: float) -> None:
        """Close kept-alive connections idle for `keepalive` seconds and requests not whole
        within `READ_TIMEOUT`; accept again once below `worker_connections`."""
        # A new connection's first request has at least IDLE_FIRST (with keep-alive off, 0
        # would close it before it could speak).
        idle_limit = max(self.cfg.keepalive, self.IDLE_FIRST)
        for conn in list(self.conns.values()):
            if conn.queued:
                continue
            if conn.buf and now - conn.started > self.READ_TIMEOUT:
                self.refuse(conn, b"408 Request Timeout")
            elif not conn.buf and now - conn.started > idle_limit:
                self.close(conn)
        if self.alive:
            self.set_accepting(True)  # again, after running out of files (see accept)

    def close(self, conn: _Conn) -> None:
        if self.conns.pop(conn.sock.fileno(), None) is None:
            return
        if not conn.eof and not conn.paused:
            self.poller.unregister(conn.sock)
        conn.closed = True
        util.close(conn.sock)

    def send(self, conn: _Conn, data: bytes) -> None:
        try:
            conn.sock.send(data)  # a few bytes into an empty send buffer: never partial
        except OSError:
            pass

    def refuse(self, conn: _Conn, status: bytes) -> None:
        """A canned answer without the app, and the connection closed."""
        self.send(conn, b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
        self.close(conn)

    # ---- serving --------------------------------------------------------------------------

    def overload_wait(self, now: float) -> float | None:
        """How long a request may wait on this worker while it is overloaded (an eighth of
        the budget); None when it is not (see the class's docstring)."""
        if self.ready and now - self.busy_since >= self.budget:
            self.overloaded_until = now + self.budget
        return self.budget / self.OVERLOAD_SHARE if now < self.overloaded_until else None

    def shed_expired(self) -> float | None:
        """Refuse at once every request at the head of the queue that has waited past what
        it may (the queue is in order of arrival): under overload a refusal costs a few
        microseconds, not a pass of the loop. Returns the overload wait now (None: none)."""
        if not self.budget:
            return None
        now = time.monotonic()
        short = self.overload_wait(now)
        late, stale = now - self.budget, now - (short if short is not None else self.budget)
        while self.ready and (self.ready[0].closed or self.ready[0].arrived < late or self.ready[0].received < stale):
            self.serve(self.ready.popleft(), short)
        return short

    def serve(self, conn: _Conn, short: float | None) -> None:
        """The oldest whole request: refused if it waited past the budget since it reached
        the host, or past `short` (the overload wait, if any) since it reached this socket;
        else answered."""
        if conn.closed:
            return
        data = bytes(conn.buf[:conn.size])
        del conn.buf[:conn.size]
        conn.queued = False
        arrived = conn.arrived
        now = time.monotonic()
        if self.budget and not data.startswith(_NEVER_SHED):
            if now - arrived > self.budget:
                self.shed(conn, data, "late", now)
                return
            if short is not None and now - conn.received > short:
                self.shed(conn, data, "overload", now)
                return
        self.queue_seconds.observe(now - arrived)
        conn.started = now  # idle (or reading its next request) from now
        keepalive = self.answer(conn, data, arrived)
        self.service += (time.monotonic() - now - self.service) / 16
        if not keepalive or conn.eof and not conn.buf:
            self.close(conn)
            return
        if conn.paused:
            conn.paused = False
            self.poller.register(conn.sock, selectors.EVENT_READ, conn)
        if conn.buf:  # pipelined: the next request may be whole already
            self.frame(conn, now)
        if conn.eof and not conn.queued:
            self.close(conn)

    def shed(self, conn: _Conn, data: bytes, reason: str, now: float) -> None:
        """Refuse `data` (taken off `conn`'s buffer) unread: a bare 503, counted. Kept
        alive: under overload a close would cost a new connection per refusal."""
        self.shed_count.labels(_path_kind(data), reason).inc()
        if reason == "overload":  # still more than it can serve: the short wait goes on
            self.overloaded_until = time.monotonic() + self.budget
        self.send(conn, _SHED_ANSWER)
        conn.started = now
        if conn.buf:
            self.frame(conn, now)
        if conn.eof and not conn.queued:
            self.close(conn)

    def answer(self, conn: _Conn, data: bytes, arrived: float) -> bool:
        """`data` (one whole request) through gunicorn's parser and the app; True to keep
        the connection."""
        req = None
        conn.sock.settimeout(self.WRITE_TIMEOUT)  # the answer is written blocking
        try:
            req = next(http.get_parser(self.cfg, iter((data,)), conn.addr))
            req._expected_100_continue = False  # sent already if the client asked
            return self.handle_request(req, conn, arrived)
        except (http.errors.NoMoreData, StopIteration):
            return False
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN) and not isinstance(e, TimeoutError):
                self.log.exception("Socket error processing request.")
            return False
        except Exception as e:  # noqa: BLE001 - a bad request: gunicorn answers it (400, ...)
            self.handle_error(req, conn.sock, conn.addr, e)
            return False
        finally:
            if not conn.closed:
                conn.sock.setblocking(False)

    def handle_request(self, req, conn: _Conn, arrived: float) -> bool:
        """gthread's `handle_request`, on this loop's thread (one request at a time)."""
        environ, resp = {}, None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, conn.sock, conn.addr, conn.server, self.cfg)
            environ["volbot.arrived"] = arrived
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
            if (not self.alive or not self.cfg.keepalive or conn.eof
                    or SHARE.over(self.share_slot, len(self.conns))):
                resp.force_close()  # "Connection: close": the client reconnects (see ConnectionShare)
            respiter = self.wsgi(environ, resp.start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except (Exception, SystemExit):
            if resp is not None and resp.headers_sent:
                self.log.exception("Error handling request")  # half an answer: only closing is left
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")

    # ---- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Take what is queued on the socket and leave the kernel's balancing group (the
        connections now go to the other workers); answer the requests already here and those
        that arrive whole within the grace time (with "Connection: close"); close the rest."""
        SHARE.retire(self.share_slot)
        now = time.monotonic()
        for listener in self.sockets:
            if self.cfg.reuse_port:
                self.accept(listener, now)
            if self.accepting:
                self.poller.unregister(listener)
            if self.cfg.reuse_port:
                listener.close()
        self.accepting, self.sockets = False, []
        linger = now + self.STOP_LINGER
        graceful = now + self.cfg.graceful_timeout
        while self.conns and time.monotonic() < graceful:
            self.notify()
            self.poll(0.0 if self.ready else 0.1)
            if self.ready:
                self.serve(self.ready.popleft(), None)
                continue
            if time.monotonic() > linger:  # only idle or half-sent requests are left
                break
            self.sweep(time.monotonic())
        for conn in list(self.conns.values()):
            self.close(conn)
        self.poller.close()


class _Conn:
    """A client connection of `BufferedWorker` and the bytes it has sent so far."""

    __slots__ = ("sock", "addr", "server", "buf", "started", "received", "arrived", "size", "queued", "eof",
                 "paused", "closed", "continued", "over")

    def __init__(self, sock, addr, server, now: float):
        self.sock, self.addr, self.server = sock, addr, server
        self.buf = bytearray()
        self.started = now  # the first byte of the request being read (or idle since)
        self.received = now  # when the queued request became whole on this socket (the kernel's stamp)
        self.arrived = now  # when it reached the host: `received`, or earlier by a proxy's X-Request-Start
        self.size = 0  # the queued request's length in `buf`
        self.queued = self.eof = self.paused = self.closed = self.continued = False
        self.over = False  # accepted beyond worker_connections: its first request is refused


# SO_TIMESTAMPNS (Linux; the constant is missing from Python's socket module): a read on a
# TCP socket comes with the time its last segment was received, as a struct timespec.
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("qq")
_STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


def _request_start(value: bytes, stamp: float, clock_offset: float) -> float:
    """A proxy's `X-Request-Start` (`t=1733500000.123`, epoch seconds as nginx's $msec) on
    the monotonic clock; `stamp` when it is no such value or not within a minute before it
    (a clock that disagrees is not a queue)."""
    if value.startswith(b"t="):
        value = value[2:]
    if len(value) > 24:
        return stamp
    try:
        start = float(value) - clock_offset
    except ValueError:
        return stamp
    return start if stamp - 60.0 <= start <= stamp else stamp  # NaN fails both


def _raise_open_files_limit() -> None:
    """The soft limit of open files up to the hard one (systemd's default soft limit is
    1,024: a worker of 1,000 connections and their overflow would run out of files)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


_SHED_ANSWER = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n"


def _chunked_end(buf: bytearray, pos: int) -> int | None:
    """Where a chunked body starting at `pos` ends (after its trailers), None if not yet
    all there; a chunk size that is no hex number ends it there (gunicorn refuses it)."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            return eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)
            return end + 4 if end >= 0 else None
        pos = eol + 2 + size + 2
        if pos > len(buf):
            return None


# The probes an operator and a load balancer rely on, cheapest of all: answered however long
# they waited, so an overloaded host still shows its metrics and says it is alive.
_NEVER_SHED = (b"GET /metrics", b"GET /healthz", b"GET /readyz")


def _path_kind(data: bytes) -> str:
    """The metric label of a refused request: the webhook, or anything else."""
    return "wechat" if data.startswith((b"POST /wechat?", b"POST /wechat ")) else "other"


class Logger(glogging.Logger):
    """gunicorn's logger, but an access line is built only when the access log is on.
    gunicorn builds it whenever a logging configuration is given (ours always is) and
    leaves it to the logger's level: per request, a dozen atoms formatted for nothing."""

    def _compute_access_log_enabled(self):
        return bool(self.cfg.accesslog)
