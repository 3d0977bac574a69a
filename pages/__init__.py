"""The web pages inside WeChat (H5) at /m: a follower's own record, time-bank passbook,
orders, activities, certificates, the bus and what is near, one tap from the chat.

Who is asking is learnt by WeChat's web OAuth (`snsapi_base`, `pages.auth`) and kept in a
signed cookie; every page reads and changes only that openid's own rows, through the same
domain rules as chat and the console. `bot.app` registers `pages` (the blueprint) and hands
it the WeChat API client (`app.extensions["volbot.wechat"]`): this package imports neither
the shell nor `pushes`.
"""

import importlib

from pages.web import pages

# Importing a view module registers its routes on `pages`.
VIEWS = ("auth", "home", "records", "orders", "activities", "certificates", "bus", "nearby", "notices", "family", "jssdk")
for _view in VIEWS:
    importlib.import_module(f"pages.views.{_view}")

__all__ = ["pages"]
