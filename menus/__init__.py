"""District data as files: the main menu and texts (`main.yaml`), the needs menu, the
custom menu. This package reads its own data files and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

HERE = Path(__file__).parent


@dataclass(frozen=True)
class MenuItem:
    key: str
    label: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class MainMenu:
    welcome: str
    title: str
    footer: str
    coming_soon: str
    not_understood: str
    items: tuple[MenuItem, ...]
    help: str
    form: dict  # texts the form engine says


def load_yaml(name: str):
    with open(HERE / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


@lru_cache(maxsize=None)  # immutable data read from a file shipped with the code
def main_menu() -> MainMenu:
    data = load_yaml("main.yaml")
    items = tuple(MenuItem(i["key"], i["label"], tuple(i.get("words") or ())) for i in data["items"])
    keys = [i.key for i in items]
    if len(set(keys)) != len(keys):
        raise ValueError("main.yaml: duplicate menu keys")
    return MainMenu(
        welcome=data["welcome"],
        title=data["title"],
        footer=data["footer"],
        coming_soon=data["coming_soon"],
        not_understood=data["not_understood"],
        items=items,
        help=data["help"],
        form=data["form"],
    )
