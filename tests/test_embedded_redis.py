"""The embedded Redis of an instance folder: found and reused by every later process, and
stopped only by the process that started it (store.redis.find_or_start)."""

from __future__ import annotations

from pathlib import Path

import redis

from store.redis import find_or_start, running_socket


def test_a_second_user_reuses_the_server_and_cannot_stop_it(tmp_path):
    url, owner = find_or_start(tmp_path)
    try:
        assert owner is not None
        again, handle = find_or_start(tmp_path)
        assert again == url and handle is None  # found, not ours: nothing to stop
        other = redis.Redis.from_url(again)
        other.set("k", "v")
        # The starter leaves it running while someone else is connected (a demo that
        # started after a one-off command did) ...
        assert owner.shutdown(unless_in_use=True) is False
        assert other.get("k") == b"v" and running_socket(tmp_path) == url[len("unix://"):]
        other.close()
    finally:
        # ... and stops it once alone, or when told to.
        assert owner.shutdown(unless_in_use=True) is True
    assert running_socket(tmp_path) is None and not Path(url[len("unix://"):]).exists()
    assert not (tmp_path / "server.json").exists()


def test_a_stale_announcement_starts_a_new_server(tmp_path):
    (tmp_path / "server.json").write_text('{"socket": "%s"}' % (tmp_path / "gone.socket"))
    url, owner = find_or_start(tmp_path)
    try:
        assert owner is not None and redis.Redis.from_url(url).ping()
    finally:
        owner.shutdown()
