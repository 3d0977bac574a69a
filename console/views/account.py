"""The signed-in coordinator's own account: their WeChat binding (a one-time code to send
in chat, or unbinding)."""

from __future__ import annotations

from flask import g, redirect, url_for

from console.web import audit, console, flash, render
from rules import console_binding


@console.get("/account")
def account():
    return render("account.html", coordinator=g.coordinator, code=None)


@console.post("/account/bind-code")
def account_bind_code():
    row = console_binding.issue(g.db, g.coordinator, g.now)
    audit("account.bind_code", entity="coordinator", entity_id=g.coordinator.id)
    g.db.commit()
    return render("account.html", coordinator=g.coordinator, code=row)


@console.post("/account/unbind")
def account_unbind():
    if g.coordinator.follower_id is not None:
        console_binding.unbind(g.db, g.coordinator)
        audit("account.unbind", entity="coordinator", entity_id=g.coordinator.id)
        g.db.commit()
        flash("已解除微信绑定。")
    return redirect(url_for("console.account"))
