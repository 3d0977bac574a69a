"""A token bucket in Redis: at most `rate` sends per second (bursts up to `burst`) across
every worker on every host. The bucket is one Lua script on Redis's own clock, so workers
with skewed clocks still share one budget; losing it only resets the budget."""

from __future__ import annotations

import time

import redis

from store.ephemeral import PREFIX

_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(s[1]) or burst
local ts = tonumber(s[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 60)
return tostring(wait)
"""


class TokenBucket:
    def __init__(self, client: redis.Redis, name: str, rate: float, burst: float | None = None):
        self.client = client
        self.key = f"{PREFIX}bucket:{name}"
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self._script = client.register_script(_TAKE)

    def try_take(self) -> float:
        """Take one token: 0.0 on success, else the seconds to wait before trying again."""
        return float(self._script(keys=[self.key], args=[self.rate, self.burst]))

    def take(self, timeout: float = 30.0) -> bool:
        """Block until a token is taken (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while True:
            wait = self.try_take()
            if wait <= 0:
                return True
            if time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)
