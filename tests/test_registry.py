"""Routing does not depend on the order journeys register in: the real journeys' registrations,
replayed into fresh registries in shuffled orders, always route alike; and a key claimed twice
(a command word, an event, a scene prefix, a fallback's place) stops start-up."""

from __future__ import annotations

import random

import pytest

from dialogue.flows import Flow, Step
from dialogue.registry import Registry
from handlers import registry as real


def replay(order_seed: int) -> Registry:
    """A fresh registry given every registration of the real one, in a shuffled order."""
    calls = []
    for flow in real.flows.values():
        calls.append(lambda r, flow=flow: r.flow(flow))
    for cmd in real.commands.values():
        calls.append(lambda r, cmd=cmd: r.command(cmd.key, *cmd.words)(cmd.handler))
    for name, fn in real.events.items():
        calls.append(lambda r, name=name, fn=fn: r.on_event(name)(fn))
    for prefix, fn in real.scenes.items():
        calls.append(lambda r, prefix=prefix, fn=fn: r.on_scene(prefix)(fn))
    for place, fn in real.fallback_places.items():
        calls.append(lambda r, place=place, fn=fn: r.fallback(order=place)(fn))
    for place, fn in real.location_places.items():
        calls.append(lambda r, place=place, fn=fn: r.on_location(order=place)(fn))
    for fn in real.erasers:
        calls.append(lambda r, fn=fn: r.eraser(fn))
    random.Random(order_seed).shuffle(calls)
    fresh = Registry()
    for call in calls:
        call(fresh)
    return fresh


SCENES = ["act:12", "st:3", "cm:KW001", "act:", "cm:", "qrscene_x", "unknown:1"]


@pytest.mark.parametrize("seed", range(8))
def test_shuffled_registrations_route_alike(seed):
    fresh = replay(seed)
    assert fresh.fallbacks == real.fallbacks and fresh.locations == real.locations
    assert fresh.erasers == real.erasers and fresh.words == real.words
    assert [fresh.scene_handler(s) for s in SCENES] == [real.scene_handler(s) for s in SCENES]
    assert fresh.events == real.events and fresh.flows.keys() == real.flows.keys()


def test_the_journeys_places_are_as_designed():
    """The time bank's and dispatch's words with numbers before the need search, an order
    number typed alone last; a check-in at a shift's place before the nearby stations."""
    assert [f.__module__ for f in real.fallbacks] == ["handlers.timebank", "handlers.dispatch", "handlers.orders",
                                                      "handlers.my_orders"]
    assert [f.__module__ for f in real.locations] == ["handlers.checkin", "handlers.nearby"]


def test_a_scene_goes_to_its_longest_prefix_whatever_the_order():
    for first, second in (("act:", "act:x:"), ("act:x:", "act:")):
        reg = Registry()
        reg.on_scene(first)(lambda ctx, m, p=first: p)
        reg.on_scene(second)(lambda ctx, m, p=second: p)
        assert reg.scene_handler("act:x:7")(None, None) == "act:x:"
        assert reg.scene_handler("act:7")(None, None) == "act:"


def noop(ctx, message):
    return None


@pytest.mark.parametrize("claim_twice", [
    lambda r: (r.command("A", "你好")(noop), r.command("B", "你好")(noop)),
    lambda r: (r.command("A")(noop), r.command("A")(noop)),
    lambda r: (r.on_event("subscribe")(noop), r.on_event("subscribe")(noop)),
    lambda r: (r.on_scene("act:")(noop), r.on_scene("act:")(noop)),
    lambda r: (r.fallback(order=10)(noop), r.fallback(order=10)(lambda c, m: None)),
    lambda r: (r.on_location(order=1)(noop), r.on_location(order=1)(lambda c, m: None)),
    lambda r: (r.flow(Flow("f", "F", [Step("a", "?")], done=noop)), r.flow(Flow("f", "F", [Step("a", "?")], done=noop))),
])
def test_a_key_claimed_twice_stops_start_up(claim_twice):
    with pytest.raises(ValueError, match="twice|already belongs"):
        claim_twice(Registry())
