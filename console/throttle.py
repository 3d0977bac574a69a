"""Throttling of console logins per (account, client address), with growing delays.

Each (username tried, real client address) pair has its own count of failures in Redis
(`console:login:throttle:<hash of username>:<hash of address>`, may be lost: then guessing starts over at a short delay,
nothing worse). The first `FREE` failures cost nothing; after that each failure makes the
pair wait `BASE_DELAY` × 2^(failures − FREE) seconds, at most `MAX_DELAY`, before it may try
again — even with the right password, or guessing would go on. A success clears the pair.
The count forgets a pair `FORGET` seconds after its last failure.

Why per pair and not per username or per address: a blanket count per address locked every
coordinator behind the same NAT (or, behind nginx without the proxy fix, everyone) after 30
failures of anyone; a count per username lets an attacker lock a coordinator out by guessing
in their name. Per pair, an attacker slows only themself, and a coordinator at their own
desk is never stopped by someone else's failures.

Why our own code and not Flask-Limiter: it counts requests in fixed or moving windows and
refuses above a rate; "only failures count, and each one doubles the wait" is not a limit
it can express (it would need a stack of windows approximating it), and the login view must
decide after checking the password whether the attempt counts. This is one hash per pair.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

FREE = 3
BASE_DELAY = 5  # seconds after the first failure past FREE
MAX_DELAY = 15 * 60
FORGET = 24 * 3600

# Atomically: count a failure, compute the wait from the count, store when the pair may try
# again, keep the hash FORGET seconds. ARGV: now, FREE, BASE_DELAY, MAX_DELAY, FORGET.
_FAIL = """
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local wait = 0
if n > tonumber(ARGV[2]) then
  wait = math.min(tonumber(ARGV[3]) * 2 ^ (n - tonumber(ARGV[2]) - 1), tonumber(ARGV[4]))
end
redis.call('HSET', KEYS[1], 'until', tonumber(ARGV[1]) + wait)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return {n, math.floor(wait)}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    wait: int = 0  # seconds until the pair may try again (when not allowed)


PREFIX = "console:login:throttle:"


def _account(username: str) -> str:
    return PREFIX + hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]


def _key(username: str, address: str) -> str:
    return _account(username) + ":" + hashlib.sha256(address.encode()).hexdigest()[:32]


class LoginThrottle:
    def __init__(self, redis, clock):
        self.redis = redis
        self.clock = clock
        self._fail = redis.register_script(_FAIL)

    def check(self, username: str, address: str) -> Verdict:
        until = self.redis.hget(_key(username, address), "until")
        wait = float(until or 0) - self.clock.timestamp()
        return Verdict(True) if wait <= 0 else Verdict(False, max(1, int(wait + 0.999)))

    def failed(self, username: str, address: str) -> int:
        """Count a failure; the seconds the pair must now wait."""
        _n, wait = self._fail(keys=[_key(username, address)],
                              args=[self.clock.timestamp(), FREE, BASE_DELAY, MAX_DELAY, FORGET])
        return int(wait)

    def succeeded(self, username: str, address: str) -> None:
        self.redis.delete(_key(username, address))

    def clear_account(self, username: str) -> None:
        """Forget every pair of `username` (an operator set a new password, so the guesses
        made so far are moot)."""
        for key in self.redis.scan_iter(match=_account(username) + ":*", count=500):
            self.redis.delete(key)


def describe_wait(seconds: int) -> str:
    """The wait in words for the login page."""
    if seconds < 60:
        return f"{seconds} 秒"
    return f"{(seconds + 59) // 60} 分钟"
