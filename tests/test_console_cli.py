"""`volbot console add-user / set-password / deactivate`, then a login with the result."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from bot.cli import main
from store.models import Coordinator
from tests.console_support import Browser, signed_in
from tests.seeds import apply


def env(svc, password=None):
    e = {"DATABASE_URL": svc.config.database_url or svc.config.sqlalchemy_url, "REDIS_URL": svc.redis_url,
         "VOLBOT_INSTANCE": str(svc.config.instance_path), "VOLBOT_ENV": "testing"}
    if password:
        e["VOLBOT_CONSOLE_PASSWORD"] = password
    return e


def test_add_user_then_log_in(base_url, svc):
    apply(svc, ["vol_teams"])
    run = CliRunner().invoke
    out = run(main, ["console", "add-user", "--team", "VT-DG", "--username", "zhou", "--role", "detachment",
                     "--name", "周分队长"], env=env(svc, "a long pass phrase"))
    assert out.exit_code == 0 and "created console user zhou" in out.output, out.output
    assert "a long pass phrase" not in out.output
    with svc.db.session() as s:
        c = s.scalar(select(Coordinator).where(Coordinator.username == "zhou"))
        assert c.name == "周分队长" and c.password_hash.startswith("$argon2id$")
    assert Browser(base_url).login("zhou", "a long pass phrase").status_code == 302
    # a prompt when the variable is absent, asked twice
    out = run(main, ["console", "add-user", "--team", "VT-DF", "--username", "li", "--role", "squad"],
              env=env(svc), input="another long one\nanother long one\n")
    assert out.exit_code == 0, out.output
    assert Browser(base_url).login("li", "another long one").status_code == 302


def test_refusals_are_one_clear_line(svc):
    apply(svc, ["vol_teams"])
    run = CliRunner().invoke
    wrong_role = run(main, ["console", "add-user", "--team", "VT-DF", "--username", "x", "--role", "brigade"],
                     env=env(svc, "a long pass phrase"))
    assert wrong_role.exit_code == 1 and "needs a team of kind brigade" in wrong_role.output
    short = run(main, ["console", "add-user", "--team", "VT-DF", "--username", "x", "--role", "squad"],
                env=env(svc, "short"))
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    unknown = run(main, ["console", "add-user", "--team", "NOPE", "--username", "x", "--role", "squad"],
                  env=env(svc, "a long pass phrase"))
    assert unknown.exit_code == 1 and "no team with code 'NOPE'" in unknown.output


def test_set_password_lifts_the_delay_and_ends_sessions_and_deactivate_stops_logins(base_url, svc):
    from console import throttle

    apply(svc, ["console_logins"])
    elsewhere = signed_in(base_url, "df_lead")  # a session open before the reset
    b = Browser(base_url)
    for _ in range(throttle.FREE + 1):
        b.login("df_lead", "wrong wrong wrong")
    assert b.login("df_lead", "brand new password").status_code == 429
    run = CliRunner().invoke
    done = run(main, ["console", "set-password", "--username", "df_lead"], env=env(svc, "brand new password"))
    assert done.exit_code == 0 and "1 open session(s) ended" in done.output
    assert elsewhere.get("/console/").status_code == 302  # back to the login page
    again = Browser(base_url)
    assert again.login("df_lead", "brand new password").status_code == 302
    done = run(main, ["console", "deactivate", "--username", "df_lead"], env=env(svc))
    assert done.exit_code == 0 and "1 open session(s) ended" in done.output
    assert again.get("/console/").status_code == 302
    assert Browser(base_url).login("df_lead", "brand new password").status_code == 401
