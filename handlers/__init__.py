"""The journeys. Each module declares its flows and commands on the one `registry`.

A journey takes a plain `dialogue.Message` (through its `Ctx`) and returns a plain reply:
no Flask, no XML, no wechatpy here.
"""

from dialogue.registry import Registry

registry = Registry()

# Importing a journey module registers it. Routing does not depend on this order: fallbacks and
# location handlers name their places (`order=`), and every key can be claimed only once.
from handlers import (  # noqa: E402,F401 - imported for their registrations
    activities,
    bus,
    callouts,
    checkin,
    console_bind,
    dispatch,
    hours,
    inbox,
    my_orders,
    nearby,
    notices,
    orders,
    push_receipts,
    review,
    surveys,
    timebank,
    volunteers,
    welcome,
)
