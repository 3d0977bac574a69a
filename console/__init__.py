"""The coordinators' web console (/console): server-rendered pages over the same domain
rules as chat and the CLI, every query scoped by `rules.access` to the coordinator's
subtree, every action written to the audit log.

`bot.app` registers `console` (the blueprint); importing the views registers their routes.
"""

import importlib

from console.web import console

# Importing a view module registers its routes on `console`.
VIEWS = ("account", "activities", "announcements", "attendance", "audit", "auth", "bus", "contact", "dashboard",
         "hours", "inbox", "needs", "orders", "places", "reports", "security", "timebank", "volunteers")
for _view in VIEWS:
    importlib.import_module(f"console.views.{_view}")

__all__ = ["console"]
