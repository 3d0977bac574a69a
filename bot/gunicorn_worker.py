"""The gunicorn classes of `volbot serve`: gunicorn's `gthread` worker with a listening
socket of its own, so the kernel spreads connections over the workers; and its logger,
which builds no access line while the access log is off.

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
"""

from __future__ import annotations

import os

from gunicorn import glogging, sock
from gunicorn.workers.gthread import ThreadWorker

from bot.gunicorn_conf import ready_dir


class BalancedThreadWorker(ThreadWorker):
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
        # Loaded and listening: `volbot serve` may now stop the workers this one replaces.
        ready_dir().mkdir(parents=True, exist_ok=True)
        (ready_dir() / str(os.getpid())).touch()
        super().run()

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled)
        if enabled or self.alive or not self.cfg.reuse_port:
            return
        # Stopping for good: drain the queue, then leave the kernel's balancing group.
        for listener in self.sockets:
            while True:
                before = self.nr_conns
                self.accept(listener)  # non-blocking: an empty queue takes nothing
                if self.nr_conns == before:
                    break
            listener.close()
        self.sockets = []


class Logger(glogging.Logger):
    """gunicorn's logger, but an access line is built only when the access log is on.
    gunicorn builds it whenever a logging configuration is given (ours always is) and
    leaves it to the logger's level: per request, a dozen atoms formatted for nothing."""

    def _compute_access_log_enabled(self):
        return bool(self.cfg.accesslog)
