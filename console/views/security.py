"""The signed-in coordinator's own security: the second factor (enrolment by QR code,
recovery codes, turning it off where the role allows), their open sessions (where, which
browser, last seen; end one or all others) and changing their password (which ends every
other session). Every change is audited."""

from __future__ import annotations

from flask import Response, abort, g, make_response, redirect, request, url_for

from console import accounts, twofactor
from console.throttle import describe_wait
from console.web import (
    audit,
    client_ip,
    console,
    flash,
    needs_second_factor,
    render,
    services,
    sessions,
    set_session_cookie,
    start_session,
    throttle,
)


def _required() -> bool:
    return twofactor.required(services().config.console_2fa_required_roles, g.coordinator)


def _page(coordinator, *, left: int = 0, codes=None, secret=None, error=None, must: bool = False):
    """The second-factor page: enrolment (`secret`), the recovery codes just issued, or the state."""
    return render("security_2fa.html", coordinator=coordinator, required=_required(), left=left, codes=codes,
                  secret=secret, error=error, must=must)


def _code_ok(code: str) -> str | None:
    """Check a current code from the coordinator's app before a change to the factor; the
    error text, or None. Wrong codes are throttled like logins (a stolen session must not
    guess its way to turning the factor off)."""
    username = g.coordinator.username or ""
    verdict = throttle().check(username, client_ip())
    if not verdict.allowed:
        return f"尝试次数过多，请 {describe_wait(verdict.wait)}后再试。"
    svc = services()
    if twofactor.verify(g.db, g.coordinator, code, svc.clock.timestamp()):
        return None
    throttle().failed(username, client_ip())
    return "验证码不正确或已用过。"


@console.get("/account/2fa")
def security_2fa():
    coordinator = g.coordinator
    if twofactor.enabled(coordinator):
        return _page(coordinator, left=twofactor.recovery_codes_left(g.db, coordinator))
    if not g.session.enrol_secret:
        sessions().set_enrol_secret(g.session, twofactor.new_secret())
    return _page(coordinator, secret=twofactor.grouped(g.session.enrol_secret), must=needs_second_factor(coordinator))


@console.get("/account/2fa/qr.png")
def security_2fa_qr():
    """The enrolment QR code (otpauth:// URI of the secret being enrolled), served here:
    the secret never goes to another site to be drawn."""
    if not g.session.enrol_secret or twofactor.enabled(g.coordinator):
        abort(404)
    uri = twofactor.provisioning_uri(g.session.enrol_secret, g.coordinator.username or str(g.coordinator.id))
    return Response(twofactor.qr_png(uri), mimetype="image/png")


@console.post("/account/2fa")
def security_2fa_enable():
    coordinator = g.coordinator
    if twofactor.enabled(coordinator):
        return redirect(url_for("console.security_2fa"))
    secret = g.session.enrol_secret
    if not secret:
        return redirect(url_for("console.security_2fa"))
    svc = services()
    codes = twofactor.enable(g.db, coordinator, secret, request.form.get("code", "")[:16], g.now,
                             svc.clock.timestamp())
    if codes is None:
        return make_response(_page(coordinator, secret=twofactor.grouped(secret), must=needs_second_factor(coordinator),
                                   error="验证码不正确，请输入验证器中显示的最新 6 位数字。"), 400)
    audit("account.2fa_enable", entity="coordinator", entity_id=coordinator.id)
    g.db.commit()
    sessions().set_enrol_secret(g.session, "")
    return _page(coordinator, left=len(codes), codes=codes)


@console.post("/account/2fa/recovery-codes")
def security_2fa_recovery_codes():
    coordinator = g.coordinator
    if not twofactor.enabled(coordinator):
        return redirect(url_for("console.security_2fa"))
    error = _code_ok(request.form.get("code", "")[:16])
    if error:
        g.db.rollback()
        flash(error, "error")
        return redirect(url_for("console.security_2fa"))
    codes = twofactor.issue_recovery_codes(g.db, coordinator, g.now)
    audit("account.2fa_recovery_codes", entity="coordinator", entity_id=coordinator.id)
    g.db.commit()
    return _page(coordinator, left=len(codes), codes=codes)


@console.post("/account/2fa/disable")
def security_2fa_disable():
    coordinator = g.coordinator
    if not twofactor.enabled(coordinator):
        return redirect(url_for("console.security_2fa"))
    if _required():
        flash("您的角色必须使用两步验证，不能关闭。", "error")
        return redirect(url_for("console.security_2fa"))
    error = _code_ok(request.form.get("code", "")[:16])
    if error:
        g.db.rollback()
        flash(error, "error")
        return redirect(url_for("console.security_2fa"))
    twofactor.disable(g.db, coordinator)
    audit("account.2fa_disable", entity="coordinator", entity_id=coordinator.id)
    g.db.commit()
    flash("已关闭两步验证。")
    return redirect(url_for("console.security_2fa"))


@console.get("/account/sessions")
def security_sessions():
    return render("security_sessions.html", rows=sessions().of_account(g.coordinator.id), current=g.session.sid)


@console.post("/account/sessions/end")
def security_sessions_end():
    sid = request.form.get("sid", "")[:64]
    if sid == g.session.sid:
        return redirect(url_for("console.security_sessions"))  # this browser signs out with 退出
    if sessions().end(g.coordinator.id, sid):
        audit("session.end", entity="coordinator", entity_id=g.coordinator.id)
        g.db.commit()
        flash("已结束该会话。")
    return redirect(url_for("console.security_sessions"))


@console.post("/account/sessions/end-others")
def security_sessions_end_others():
    ended = sessions().end_all(g.coordinator.id, keep=g.session.sid)
    audit("session.end_others", entity="coordinator", entity_id=g.coordinator.id, after={"ended": ended})
    g.db.commit()
    flash(f"已结束其他 {ended} 个会话。")
    return redirect(url_for("console.security_sessions"))


@console.route("/account/password", methods=["GET", "POST"])
def security_password():
    if request.method == "GET":
        return render("security_password.html", error=None)
    coordinator = g.coordinator
    username = coordinator.username or ""
    verdict = throttle().check(username, client_ip())
    error = None
    new = request.form.get("new_password", "")[:256]
    if not verdict.allowed:
        error = f"尝试次数过多，请 {describe_wait(verdict.wait)}后再试。"
    elif not accounts.verify_password(coordinator.password_hash, request.form.get("password", "")[:256]):
        throttle().failed(username, client_ip())
        error = "当前密码不正确。"
    elif new != request.form.get("repeat", "")[:256]:
        error = "两次输入的新密码不一致。"
    elif len(new) < accounts.MIN_PASSWORD:
        error = f"新密码至少 {accounts.MIN_PASSWORD} 个字符。"
    if error:
        return make_response(render("security_password.html", error=error), 400)
    accounts.change_password(coordinator, new)
    audit("account.password", entity="coordinator", entity_id=coordinator.id)
    g.db.commit()
    ended = sessions().end_all(coordinator.id)  # this one too: its fingerprint is the old password's
    token = start_session(coordinator)
    flash(f"密码已修改；其他 {max(0, ended - 1)} 处登录已退出。")
    return set_session_cookie(redirect(url_for("console.account")), token)
