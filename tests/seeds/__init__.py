"""Named data set-ups for tests (and the `setup:` key of conversation tests).

Each module here defines functions `name(session)` decorated with `@seed`; they add rows
in the given session. Import order does not matter; names must be unique.
"""

from __future__ import annotations

from importlib import import_module
from pkgutil import iter_modules
from typing import Callable

SEEDS: dict[str, Callable] = {}


def seed(fn: Callable) -> Callable:
    if fn.__name__ in SEEDS:
        raise ValueError(f"seed {fn.__name__!r} defined twice")
    SEEDS[fn.__name__] = fn
    return fn


def load_all() -> dict[str, Callable]:
    for mod in iter_modules(__path__):
        import_module(f"{__name__}.{mod.name}")
    return SEEDS


def apply(services, names) -> None:
    load_all()
    with services.db.transaction() as session:
        for name in names:
            SEEDS[name](session)
