"""`store.redis.OwnConnectionScript`: the webhook's Lua scripts, run straight on each
thread's own connection, against the real Redis of the test run — results, a server that
forgot its scripts, a connection the server dropped, a connection per thread."""

from __future__ import annotations

import threading

from store.redis import PerThreadRedis

ECHO = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])"


def test_a_script_runs_and_survives_a_flushed_script_cache(svc):
    own = PerThreadRedis(svc.redis)
    echo = own.register_script(ECHO)
    assert echo(keys=["volbot:t:echo"], args=["一"]) == "一".encode()
    svc.redis.script_flush()  # as after a restart of the server: EVALSHA answers NOSCRIPT
    assert echo(keys=["volbot:t:echo"], args=[2]) == b"2"
    assert svc.redis.script_exists(echo.script.sha) == [True]  # EVAL cached it again


def test_a_dropped_connection_is_replaced_once(svc):
    own = PerThreadRedis(svc.redis)
    echo = own.register_script(ECHO)
    assert echo(keys=["volbot:t:echo"], args=["a"]) == b"a"
    first = own.client_id()  # this thread's connection
    svc.redis.client_kill_filter(_id=first)
    assert echo(keys=["volbot:t:echo"], args=["b"]) == b"b"
    assert own.client_id() != first


def test_each_thread_keeps_a_connection_of_its_own(svc):
    own = PerThreadRedis(svc.redis)
    echo = own.register_script(ECHO)
    ids: dict[str, set[int]] = {}
    together = threading.Barrier(3)

    def work(name):
        for _ in range(5):
            assert echo(keys=[f"volbot:t:{name}"], args=[name]) == name.encode()
            ids.setdefault(name, set()).add(own.client_id())
            together.wait(10)  # all three threads alive, each with its connection, at once

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(v) == 1 for v in ids.values())  # one connection per thread, kept
    assert len(set.union(*ids.values())) == 3  # and none shared while they all live


def test_rpush_goes_straight_to_the_connection_and_retries_once(svc):
    own = PerThreadRedis(svc.redis)
    assert own.rpush("volbot:t:list", "a", "b") == 2
    svc.redis.client_kill_filter(_id=own.client_id())
    assert own.rpush("volbot:t:list", "c") == 3
    assert svc.redis.lrange("volbot:t:list", 0, -1) == [b"a", b"b", b"c"]
