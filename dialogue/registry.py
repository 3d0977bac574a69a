"""Where journeys announce themselves: flows, commands (menu keys and words), events,
QR scenes and free-text fallbacks. `handlers/__init__.py` owns the one instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from dialogue.flows import Flow
from dialogue.inputs import normalize

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
    fallbacks: list[Handler] = field(default_factory=list)  # free text nobody else took
    locations: list[Handler] = field(default_factory=list)  # a location outside any form
    erasers: list[Callable] = field(default_factory=list)  # (ctx, follower) on unsubscribe

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
            self.commands[key] = Command(key, fn, tuple(words))
            for w in words:
                self.words[normalize(w).lower()] = key
            return fn

        return deco

    def on_event(self, name: str):
        def deco(fn: Handler) -> Handler:
            self.events[name] = fn
            return fn

        return deco

    def on_scene(self, prefix: str):
        def deco(fn: Handler) -> Handler:
            self.scenes[prefix] = fn
            return fn

        return deco

    def fallback(self, fn: Handler) -> Handler:
        self.fallbacks.append(fn)
        return fn

    def on_location(self, fn: Handler) -> Handler:
        self.locations.append(fn)
        return fn

    def eraser(self, fn: Callable) -> Callable:
        """Register `fn(ctx, follower)`: erase this journey's personal data on unsubscribe."""
        self.erasers.append(fn)
        return fn

    def command_for_word(self, text: str) -> Command | None:
        key = self.words.get(normalize(text).lower())
        return self.commands.get(key) if key else None

    def scene_handler(self, scene: str) -> Handler | None:
        for prefix, fn in self.scenes.items():
            if scene.startswith(prefix):
                return fn
        return None
