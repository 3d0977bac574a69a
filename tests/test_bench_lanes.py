"""bench/load.py's schedule: every push once, each user's in order, the lanes out of step."""

from __future__ import annotations

from collections import Counter

from bench.load import duration, intervals, lanes, offered, planned_at


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


def test_neighbouring_lanes_are_far_apart_in_the_visit():
    """Lanes whose pushes follow each other within a slot are at different steps, and the
    steps of any two neighbours are at least 6 apart (around the visit): the order form's
    consecutive heavy steps never come as one burst."""
    plan = lanes(scripts(1280 * 2), 64)
    for slot in (400, 401, 555):
        steps = [lane[slot][2] for lane in plan]
        for k in range(64 - 10):
            assert len(set(steps[k:k + 10])) == 10, steps[k:k + 10]
        for a, b in zip(steps, steps[1:]):
            assert min((a - b) % 20, (b - a) % 20) >= 6, (a, b)


def test_every_lane_is_done_when_the_plan_is_and_the_rate_holds_to_the_end():
    """5,000 users over 64 lanes: 8 lanes of 79 users, 56 of 78. Every lane's last push is
    planned before the plan's duration, so the whole rate is offered and nothing is cut."""
    plan = lanes(scripts(5000), 64)
    whole = duration(plan, 500)
    assert whole == 200
    paces = intervals(plan, 500)
    assert sorted(Counter(len(lane) for lane in plan).items()) == [(1560, 56), (1580, 8)]
    lasts = [planned_at(len(lane) - 1, k, 64, paces[k]) for k, lane in enumerate(plan)]
    assert max(lasts) < whole and min(lasts) > whole - 2 * max(paces)
    for users in (1280, 1500, 5000):
        plan = lanes(scripts(users), 64)
        assert offered(plan, 500, duration(plan, 500)) == 500


def test_equal_lanes_keep_one_slot_per_push():
    """With as many users on every lane, lane k's j-th push is planned at (j*n + k)/rate:
    the n lanes' pushes take turns, one every 1/rate."""
    plan = lanes(scripts(1280), 64)
    paces = intervals(plan, 500)
    for j, k in ((0, 0), (0, 63), (7, 5), (399, 31)):
        assert abs(planned_at(j, k, 64, paces[k]) - (j * 64 + k) / 500) < 1e-9


def test_a_run_cut_short_offers_what_its_window_holds():
    plan = lanes(scripts(1280), 64)
    assert round(offered(plan, 500, 10), 1) == 500
    assert offered(plan, 500, 100) == 1280 * 20 / 100
