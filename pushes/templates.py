"""Turning a push row into WeChat template data: which template a kind uses and which
push field fills each template key (`menus/templates.yaml`, ids overridable per district
through `WECHAT_TEMPLATE_<KIND>`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

TEMPLATES_FILE = Path(__file__).resolve().parents[1] / "menus" / "templates.yaml"
FIELD_LIMIT = 200  # WeChat shows 20 characters and truncates the rest; never send a novel


@dataclass(frozen=True)
class Template:
    template_id: str
    keys: dict[str, str] | None  # template key -> push field ("title" = the title)


@dataclass(frozen=True)
class Templates:
    default: Template
    kinds: dict[str, Template]

    @classmethod
    def load(cls, path: Path = TEMPLATES_FILE, ids: dict | None = None) -> "Templates":
        """The templates of `path`, each kind's id replaced by the account's own where `ids`
        has one (configured as WECHAT_TEMPLATE_<KIND>, bot/config.py)."""
        ids = ids or {}
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))

        def build(kind: str, spec: dict) -> Template:
            override = ids.get(kind)
            return Template(override or str(spec["template_id"]), spec.get("data"))

        return cls(build("default", raw["default"]),
                   {kind: build(kind, spec or {}) for kind, spec in (raw.get("kinds") or {}).items()})

    def for_kind(self, kind: str) -> Template:
        return self.kinds.get(kind, self.default)

    def render(self, kind: str, title: str, fields: dict) -> tuple[str, dict]:
        """(template_id, data) for a push; data as WeChat wants it: {key: {"value": ...}}."""
        template = self.for_kind(kind)
        values = {"title": title, **{k: str(v) for k, v in fields.items()}}
        keys = template.keys
        if keys and all(src in values for src in keys.values()):
            data = {key: values[src] for key, src in keys.items()}
        else:
            data = {"first": title}
            data.update({f"keyword{i}": str(v) for i, v in enumerate(fields.values(), start=1)})
        return template.template_id, {k: {"value": v[:FIELD_LIMIT]} for k, v in data.items()}
