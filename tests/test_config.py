"""Configuration: wrong values stop `volbot` with one line naming the variable (exit 2);
the optional instance/config.py is read."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.config import Config, ConfigError, load_config
from tests.protocol_support import free_port

VOLBOT = Path(sys.executable).with_name("volbot")
GOOD_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"



def volbot(tmp_path, *args, timeout=60, **env):
    """Run `volbot ARGS` with only the given variables (and a temp instance folder)."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
             "VOLBOT_INSTANCE": str(tmp_path / "instance"), "PYTHONWARNINGS": "ignore", **env}
    started = time.monotonic()
    done = subprocess.run([str(VOLBOT), *args], env=clean, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    return done, time.monotonic() - started


@pytest.mark.parametrize("env,variable", [
    ({"WECHAT_AES_KEY": "tooshort"}, "WECHAT_AES_KEY"),
    ({"WECHAT_AES_KEY": "!" * 43}, "WECHAT_AES_KEY"),
    ({"VOLBOT_ENV": "staging"}, "VOLBOT_ENV"),
    ({"VOLBOT_ENV": "production"}, "SECRET_KEY"),
    ({"VOLBOT_ENV": "production", "SECRET_KEY": "s3cret-prod", "PII_KEY": "p11-prod",
      "WECHAT_TOKEN": "tok", "WECHAT_APPID": "wxprod", "WECHAT_SECRET": "dev-secret"}, "WECHAT_SECRET"),
    ({"DATABASE_URL": "mysql://localhost/x"}, "DATABASE_URL"),
    ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
    ({"REPLY_DEADLINE": "soon"}, "REPLY_DEADLINE"),
    ({"REPLY_DEADLINE": "6"}, "REPLY_DEADLINE"),
    ({"DEDUP_TTL": "10"}, "DEDUP_TTL"),
    ({"WECHAT_API_BASE": "ftp://x"}, "WECHAT_API_BASE"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_wrong_value_stops_with_one_line(tmp_path, env, variable):
    done, _ = volbot(tmp_path, "db", "upgrade", **env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"volbot: {variable}:"), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("env,variable", [
    ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:{port}/x"}, "DATABASE_URL"),
    ({"REDIS_URL": "redis://127.0.0.1:{port}/0"}, "REDIS_URL"),
], ids=["database", "redis"])
def test_unreachable_service_stops_quickly(tmp_path, env, variable):
    env = {k: v.format(port=free_port()) for k, v in env.items()}
    done, elapsed = volbot(tmp_path, "db", "upgrade", **env)
    assert done.returncode == 2 and elapsed < 15
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"volbot: {variable}: cannot connect"), done.stderr


def test_upgrade_on_a_fresh_instance_then_config_file(tmp_path):
    done, _ = volbot(tmp_path, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "instance" / "volbot.sqlite3").is_file()
    (tmp_path / "instance" / "config.py").write_text('WECHAT_AES_KEY = "abc"\n')
    done, _ = volbot(tmp_path, "db", "upgrade")
    assert done.returncode == 2 and done.stderr.startswith("volbot: WECHAT_AES_KEY:")
    (tmp_path / "instance" / "config.py").write_text("this is not python\n")
    done, _ = volbot(tmp_path, "db", "upgrade")
    assert done.returncode == 2 and "config.py: cannot be read" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_config_file_then_environment_then_overrides(tmp_path):
    (tmp_path / "config.py").write_text(
        f'WECHAT_TOKEN = "from-file"\nWECHAT_AES_KEY = "{GOOD_KEY}"\nREPLY_DEADLINE = 3\n'
        f'DATABASE_URL = "sqlite:///{tmp_path}/other.sqlite3"\n')
    config = load_config(tmp_path, environ={"WECHAT_TOKEN": "from-env", "DEDUP_TTL": "900"})
    assert (config.wechat_token, config.wechat_aes_key, config.reply_deadline, config.dedup_ttl) == (
        "from-env", GOOD_KEY, 3.0, 900)
    assert config.safe_mode and config.sqlalchemy_url == f"sqlite:///{tmp_path}/other.sqlite3"
    assert load_config(tmp_path, environ={}, wechat_token="override").wechat_token == "override"


def test_defaults_and_url_spellings(tmp_path):
    config = load_config(tmp_path, environ={})
    assert config == Config(instance_path=tmp_path.resolve())
    assert not config.safe_mode and config.sqlalchemy_url == f"sqlite:///{tmp_path.resolve()}/volbot.sqlite3"
    assert load_config(tmp_path, environ={"DATABASE_URL": "postgres://u@h/db"}).sqlalchemy_url == \
        "postgresql+psycopg2://u@h/db"
    assert load_config(tmp_path, environ={"WECHAT_AES_KEY": ""}).wechat_aes_key is None


def test_the_console_security_settings(tmp_path):
    """Issue 20's settings: their defaults (a second factor for the brigade, no proxy
    trusted) and checks; the simulator's target never depends on a request."""
    c = load_config(tmp_path, environ={})
    assert c.console_2fa_required_roles == {"brigade"} and c.trusted_proxies == 0
    assert (c.console_idle_minutes, c.audit_retention_days, c.hsts_seconds) == (30, 365, 31536000)
    assert c.simulator_target == "http://127.0.0.1:8000/wechat"
    c = load_config(tmp_path, environ={"VOLBOT_2FA_REQUIRED_ROLES": "none", "VOLBOT_TRUSTED_PROXIES": "1",
                                        "VOLBOT_BIND": "0.0.0.0:9000,127.0.0.1:9001"})
    assert c.console_2fa_required_roles == frozenset() and c.trusted_proxies == 1
    assert c.simulator_target == "http://127.0.0.1:9000/wechat"
    assert load_config(tmp_path, environ={"VOLBOT_2FA_REQUIRED_ROLES": "brigade, detachment"}
                       ).console_2fa_required_roles == {"brigade", "detachment"}
    for env, word in ({"VOLBOT_2FA_REQUIRED_ROLES": "admin"}, "roles are"), \
            ({"VOLBOT_AUDIT_RETENTION_DAYS": "30"}, "at least 180"), ({"VOLBOT_TRUSTED_PROXIES": "-1"}, "negative"), \
            ({"VOLBOT_CONSOLE_IDLE_MINUTES": "0"}, "positive"), ({"SIMULATOR_WEBHOOK_URL": "ftp://x"}, "http"):
        with pytest.raises(ConfigError, match=word):
            load_config(tmp_path, environ=env)


def test_aes_key_must_decode_to_32_bytes(tmp_path):
    with pytest.raises(ConfigError, match="WECHAT_AES_KEY"):
        load_config(tmp_path, environ={"WECHAT_AES_KEY": GOOD_KEY[:-1] + "-"})
    assert load_config(tmp_path, environ={"WECHAT_AES_KEY": GOOD_KEY}).wechat_aes_key == GOOD_KEY


def test_every_setting_is_read_here_with_its_check(tmp_path):
    """The web server's, logging's, dispatch's and the push worker's settings are fields of
    the one configuration, each with its check."""
    from bot.config import ConfigError, load_config

    c = load_config(tmp_path, environ={"VOLBOT_REUSE_PORT": "no", "VOLBOT_ACCESS_LOG": "1", "PUSH_RATE": "7.5",
                                        "DISPATCH_OFFER_MINUTES": "12", "WECHAT_TEMPLATE_BUS_VISIT": "tpl-bus",
                                        "VOLBOT_LOG_FORMAT": "json", "WEB_CONCURRENCY": "4"})
    assert (c.reuse_port, c.access_log, c.log_format, c.web_workers) == (False, True, "json", 4)
    assert c.push_settings().rate == 7.5 and c.dispatch_settings().offer_minutes == 12
    assert c.template_ids == {"bus_visit": "tpl-bus"}
    for env, word in ({"VOLBOT_REUSE_PORT": "maybe"}, "yes or no"), ({"PUSH_RATE": "0"}, "positive"), \
            ({"PUSH_CHUNK": "many"}, "expected a int"), ({"VOLBOT_LOG_FORMAT": "xml"}, "text or json"), \
            ({"DISPATCH_CAP_FACTOR": "-1"}, "positive"), ({"VOLBOT_BIND": " , "}, "at least one"):
        with pytest.raises(ConfigError, match=word):
            load_config(tmp_path, environ=env)


def test_only_the_configuration_reads_the_environment():
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    found = subprocess.run(["git", "grep", "-n", "-e", "os.environ", "-e", "getenv", "--", "*.py",
                            ":!tests", ":!bot/config.py"], cwd=repo, capture_output=True, text=True).stdout
    assert found == "", found
