"""The coordinators' web console (/console): server-rendered pages over the same domain
rules as chat and the CLI, every query scoped by `rules.access` to the coordinator's
subtree, every action written to the audit log.

`bot.app` registers `console` (the blueprint); importing the views registers their routes.
"""

from console.web import console
from console.views import (  # noqa: F401  (routes register on import)
    account, activities, audit, auth, bus, dashboard, hours, orders, places, reports, volunteers,
)

__all__ = ["console"]
