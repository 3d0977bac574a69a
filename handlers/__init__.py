"""The journeys. Each module declares its flows and commands on the one `registry`.

A journey takes a plain `dialogue.Message` (through its `Ctx`) and returns a plain reply:
no Flask, no XML, no wechatpy here.
"""

from dialogue.registry import Registry

registry = Registry()

# Importing a journey module registers it. Keep this list in menu order.
from handlers import welcome  # noqa: E402,F401
# dispatch before orders: its fallback ("接单 D2026…") must see those words before the need search
from handlers import dispatch  # noqa: E402,F401
from handlers import orders  # noqa: E402,F401
from handlers import my_orders  # noqa: E402,F401
from handlers import volunteers  # noqa: E402,F401
from handlers import hours  # noqa: E402,F401
from handlers import activities  # noqa: E402,F401
from handlers import checkin  # noqa: E402,F401
from handlers import nearby  # noqa: E402,F401
from handlers import review  # noqa: E402,F401
from handlers import push_receipts  # noqa: E402,F401
from handlers import bus  # noqa: E402,F401
from handlers import console_bind  # noqa: E402,F401
