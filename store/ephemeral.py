"""What Redis holds that may be lost: retry dedup with cached replies, per-user locks and
conversation state.

A cached reply may repeat what the user typed (an order's summary shows its address and
description), so each user's cached replies are listed under `volbot:replies:<openid>`
(written in the same script that caches them) and `Dedup.forget_user` deletes them all
when the user unsubscribes; they are not kept for the rest of their 600 s.

Each piece is one small class over a `redis.Redis` client; every key lives under
`volbot:` so one Redis can serve other apps too.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import redis

PREFIX = "volbot:"

# Compare-and-set: write the new state only if the stored version is the one we read
# (an empty payload deletes it). One Lua function, run alone or as part of closing a delivery.
_CAS_FUNCTION = """
local function cas(key, expected, payload, ttl)
  local cur = redis.call('GET', key)
  local version = 0
  if cur then
    version = tonumber(cjson.decode(cur)['version'] or 0)
  end
  if version ~= expected then
    return 0
  end
  if payload == '' then
    redis.call('DEL', key)
  else
    redis.call('SET', key, payload, 'EX', ttl)
  end
  return 1
end
"""
_CAS_SCRIPT = _CAS_FUNCTION + "return cas(KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]))"

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Dedup:
    """Remembers each inbound delivery and the reply it got.

    `claim` returns None to the first delivery of a key (which must then `finish` it) and
    the cached reply (or PENDING while the first is still running) to every retry.
    """

    PENDING = b"\x00pending"

    def __init__(self, client: redis.Redis, ttl: int):
        self.client = client
        self.ttl = ttl

    def _key(self, key: str) -> str:
        return f"{PREFIX}dedup:{key}"

    # A claim whose worker died mid-turn must not block retries for the full TTL.
    PENDING_TTL = 30

    def claim(self, key: str) -> bytes | None:
        if self.client.set(self._key(key), self.PENDING, nx=True, ex=min(self.ttl, self.PENDING_TTL)):
            return None
        return self.client.get(self._key(key)) or self.PENDING

    def peek(self, key: str) -> bytes | None:
        return self.client.get(self._key(key))

    def finish(self, key: str, reply: bytes) -> None:
        self.client.set(self._key(key), reply, ex=self.ttl)

    def release(self, key: str) -> None:
        """Forget a claim whose work did not happen, so a retry may do it."""
        self.client.delete(self._key(key))

    @staticmethod
    def index_key(openid: str) -> str:
        """The set of `openid`'s cached replies (their dedup keys)."""
        return f"{PREFIX}replies:{openid}"

    def forget_user(self, openid: str) -> None:
        """Delete every reply cached for `openid` (erasure on unsubscribe)."""
        self.client.eval(_FORGET_SCRIPT, 1, self.index_key(openid))


_FORGET_SCRIPT = """
local keys = redis.call('SMEMBERS', KEYS[1])
for i = 1, #keys, 500 do
  redis.call('DEL', unpack(keys, i, math.min(i + 499, #keys)))
end
return redis.call('DEL', KEYS[1])
"""


class LockTimeout(Exception):
    pass


class UserLock:
    """A per-openid mutex across all processes (SET NX PX with a token; Lua release)."""

    def __init__(self, client: redis.Redis, openid: str, ttl_ms: int = 10_000):
        self.client = client
        self.openid = openid
        self.key = f"{PREFIX}lock:{openid}"
        self.ttl_ms = ttl_ms
        self.token = uuid.uuid4().hex
        self.waited = 0.0

    def acquire(self, timeout: float) -> None:
        start = time.monotonic()
        delay = 0.005
        while not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            if time.monotonic() - start >= timeout:
                raise LockTimeout(self.key)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        self.waited = time.monotonic() - start

    def release(self) -> None:
        self.client.eval(_RELEASE_SCRIPT, 1, self.key, self.token)


class StaleState(Exception):
    """Another worker saved a newer conversation state first."""


@dataclass
class StateStore:
    """Conversation state per openid as a JSON document with a version (CAS on save)."""

    client: redis.Redis
    ttl: int = 7 * 24 * 3600  # garbage collection only; expiry is decided by the engine

    def __post_init__(self):
        self._cas = self.client.register_script(_CAS_SCRIPT)

    def _key(self, openid: str) -> str:
        return f"{PREFIX}state:{openid}"

    def load(self, openid: str) -> dict:
        return self.decode(self.client.get(self._key(openid)))

    @staticmethod
    def decode(raw: bytes | None) -> dict:
        """A stored state document; anything missing or unreadable is a fresh state."""
        if not raw:
            return {"version": 0}
        try:
            state = json.loads(raw)
        except ValueError:
            return {"version": 0}
        return state if isinstance(state, dict) else {"version": 0}

    def save(self, openid: str, state: dict) -> dict:
        """Save `state` (read at `state['version']`); raises StaleState if it moved on."""
        key, args, new = self.cas_arguments(openid, state)
        if not self._cas(keys=[key], args=args):
            raise StaleState(openid)
        return new

    def cas_arguments(self, openid: str, state: dict) -> tuple[str, list, dict]:
        """The compare-and-set of `state` (read at `state['version']`): its key, the
        script's arguments (expected version, new document, ttl) and the new state."""
        expected = int(state.get("version", 0))
        new = dict(state, version=expected + 1)
        payload = json.dumps(new, ensure_ascii=False, separators=(",", ":"))
        return self._key(openid), [expected, payload, self.ttl], new

    def clear(self, openid: str) -> None:
        self.client.delete(self._key(openid))


# ---- one delivery in few round trips ------------------------------------------------------

# Claim the delivery; if it is new, try the user's lock; if that is free, read the state.
_OPEN_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
  if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', tonumber(ARGV[4])) then
    return {1, 1, redis.call('GET', KEYS[3])}
  end
  return {1, 0, false}
end
return {0, 0, redis.call('GET', KEYS[1])}
"""

# Save the state if one is given (KEYS[4], compare-and-set: 0 if it moved on), release the
# user's lock if it is still ours; then remember the reply (and list it among the user's
# cached replies, KEYS[3]), or (no reply: the turn did nothing) forget the claim so that a
# retry may run it.
_CLOSE_SCRIPT = _CAS_FUNCTION + """
local saved = 1
if KEYS[4] then
  saved = cas(KEYS[4], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]))
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  redis.call('SADD', KEYS[3], KEYS[1])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3]))
end
return saved
"""


@dataclass
class Opened:
    """What the first round trip of a delivery found."""

    claimed: bool  # this is the first delivery of its dedup key: it must run the turn
    cached: bytes | None  # for a retry: the first delivery's reply, or Dedup.PENDING
    locked: bool  # the user's lock was free and is now held
    state: dict | None  # the conversation state, read under the lock


class Deliveries:
    """Dedup, user lock and state of one delivery with two Redis round trips in the
    common case (the lock is free): `open` at the start, `close` after the commit. A turn
    that used SQL saves its state by `StateStore.save` inside its transaction (before the
    commit); a turn that opened no SQL transaction hands its state to `close` instead."""

    def __init__(self, client: redis.Redis, dedup: Dedup, states: StateStore):
        self.client = client
        self.dedup = dedup
        self.states = states
        self._open = client.register_script(_OPEN_SCRIPT)
        self._close = client.register_script(_CLOSE_SCRIPT)

    def open(self, key: str, lock: UserLock) -> Opened:
        claimed, locked, value = self._open(
            keys=[self.dedup._key(key), lock.key, self.states._key(lock.openid)],
            args=[self.dedup.PENDING, min(self.dedup.ttl, self.dedup.PENDING_TTL), lock.token, lock.ttl_ms])
        if not claimed:
            return Opened(False, value or Dedup.PENDING, False, None)
        return Opened(True, None, bool(locked), StateStore.decode(value) if locked else None)

    def close(self, key: str, lock: UserLock, reply: bytes | None, state: dict | None = None) -> bool:
        """Save `state` if given, release the lock and either remember the reply (done) or
        forget the claim (nothing happened, so a retry may try again) — one round trip.
        False if the state was not saved because a newer one was (StateStore.save's case)."""
        keys = [self.dedup._key(key), lock.key, self.dedup.index_key(lock.openid)]
        args = [lock.token, reply or b"", self.dedup.ttl]
        if state is not None:
            state_key, cas_args, _ = self.states.cas_arguments(lock.openid, state)
            keys.append(state_key)
            args.extend(cas_args)
        return bool(self._close(keys=keys, args=args))
