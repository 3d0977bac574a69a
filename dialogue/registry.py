"""Where journeys announce themselves: flows, commands (menu keys and words), events,
QR scenes and free-text fallbacks. `handlers/__init__.py` owns the one instance.

Routing never depends on the order the journeys happen to be imported in: a fallback or a
location handler names its place (`order=`: the lower runs first, and two may not share one),
a QR scene goes to its longest matching prefix, and every key — a flow, a command, a trigger
word, an event, a scene prefix — can be claimed once; a second claim is an error at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from dialogue.flows import Flow
from rules.inputs import normalize

Handler = Callable  # (ctx, message) -> Reply | str | None


@dataclass
class Command:
    key: str  # the menu / click key, e.g. "ORDER"
    handler: Handler
    words: tuple[str, ...] = ()


@dataclass
class Registry:
    flows: dict[str, Flow] = field(default_factory=dict)
    commands: dict[str, Command] = field(default_factory=dict)
    words: dict[str, str] = field(default_factory=dict)  # normalised word -> command key
    events: dict[str, Handler] = field(default_factory=dict)
    scenes: dict[str, Handler] = field(default_factory=dict)  # scene prefix ("act:") -> handler
    fallback_places: dict[int, Handler] = field(default_factory=dict)  # free text nobody else took
    location_places: dict[int, Handler] = field(default_factory=dict)  # a location outside any form
    eraser_names: dict[str, Callable] = field(default_factory=dict)  # (ctx, follower) on unsubscribe

    @property
    def fallbacks(self) -> list[Handler]:
        """The fallbacks in their places, first to last."""
        return [self.fallback_places[k] for k in sorted(self.fallback_places)]

    @property
    def locations(self) -> list[Handler]:
        return [self.location_places[k] for k in sorted(self.location_places)]

    @property
    def erasers(self) -> list[Callable]:
        """Each erases its own journey's data, so their order does not matter; it is fixed
        (by name) all the same, so that every process runs them alike."""
        return [self.eraser_names[k] for k in sorted(self.eraser_names)]

    def flow(self, flow: Flow) -> Flow:
        if flow.name in self.flows:
            raise ValueError(f"flow {flow.name!r} registered twice")
        self.flows[flow.name] = flow
        return flow

    def command(self, key: str, *words: str):
        """Register `handler(ctx, message)` for a menu/click key and trigger words."""

        def deco(fn: Handler) -> Handler:
            if key in self.commands:
                raise ValueError(f"command {key!r} registered twice")
            norms = [normalize(w).lower() for w in words]
            taken = [w for w in norms if self.words.get(w, key) != key]
            if taken:
                raise ValueError(f"command {key!r}: word {taken[0]!r} already belongs to {self.words[taken[0]]!r}")
            self.commands[key] = Command(key, fn, tuple(words))
            for w in norms:
                self.words[w] = key
            return fn

        return deco

    def on_event(self, name: str):
        return self._claim(self.events, name, "event")

    def on_scene(self, prefix: str):
        return self._claim(self.scenes, prefix, "scene prefix")

    def fallback(self, *, order: int):
        """Register `handler(ctx, message)` for free text no command or menu word took; the
        fallbacks are tried by `order` (lowest first) until one answers."""
        return self._claim(self.fallback_places, order, "fallback place")

    def on_location(self, *, order: int):
        """Register `handler(ctx, message)` for a location sent outside any form, tried by
        `order` (lowest first) until one answers."""
        return self._claim(self.location_places, order, "location place")

    def eraser(self, fn: Callable) -> Callable:
        """Register `fn(ctx, follower)`: erase this journey's personal data on unsubscribe."""
        return self._claim(self.eraser_names, f"{fn.__module__}.{fn.__qualname__}", "eraser")(fn)

    @staticmethod
    def _claim(table: dict, key, what: str):
        def deco(fn: Handler) -> Handler:
            if key in table:
                raise ValueError(f"{what} {key!r} registered twice ({table[key].__qualname__}, {fn.__qualname__})")
            table[key] = fn
            return fn

        return deco

    def command_for_word(self, text: str) -> Command | None:
        key = self.words.get(normalize(text).lower())
        return self.commands.get(key) if key else None

    def scene_handler(self, scene: str) -> Handler | None:
        """The handler of the longest registered prefix of `scene`."""
        matching = [p for p in self.scenes if scene.startswith(p)]
        return self.scenes[max(matching, key=len)] if matching else None
