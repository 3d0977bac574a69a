"""The start page (one tile per page) and the text-size toggle (a cookie; no script needed)."""

from __future__ import annotations

from flask import redirect, request

from pages.web import pages, render, safe_next, secure

SIZE_COOKIE = "volbot_m_size"


@pages.get("/")
def home():
    return render("home.html")


@pages.get("/size")
def text_size():
    """Large type is the default; 标准字 / 大字 switches it for this browser."""
    to = "normal" if request.args.get("to") == "normal" else "large"
    resp = redirect(safe_next(request.args.get("next")))
    resp.set_cookie(SIZE_COOKIE, to, max_age=365 * 24 * 3600, samesite="Lax", secure=secure(), path="/m")
    return resp
