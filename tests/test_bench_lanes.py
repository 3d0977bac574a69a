"""bench/load.py's schedule: every push once, each user's in order, the lanes out of step."""

from __future__ import annotations

from collections import Counter

from bench.load import lanes, offered


def scripts(users: int) -> list:
    return [[("text", user, step, step) for step in range(20)] for user in range(users)]


def test_each_push_is_sent_once_and_each_users_in_order():
    plan = lanes(scripts(1500), 64)
    assert sum(len(lane) for lane in plan) == 1500 * 20
    for lane in plan:
        next_step: dict[int, int] = {}
        for _, user, step, _ in lane:
            assert next_step.get(user, 0) == step
            next_step[user] = step + 1
        assert set(next_step.values()) == {20}


def test_the_lanes_are_at_different_steps_at_any_moment():
    """The n-th push of every lane shares one slot of the schedule: once the lanes are full,
    each slot carries every step of the visit 3-4 times (64 lanes), not one step 64 times."""
    plan = lanes(scripts(1280 * 2), 64)
    for slot in (400, 401, 555):
        steps = Counter(lane[slot][2] for lane in plan)
        assert set(steps) == set(range(20)) and max(steps.values()) <= 4, steps


def test_the_offered_rate_counts_only_what_the_window_holds():
    assert offered(lanes(scripts(1280), 64), 500, 1280 * 20 / 500) == 500
    assert round(offered(lanes(scripts(1500), 64), 500, 1500 * 20 / 500), 1) == 494.9
