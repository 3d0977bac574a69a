"""Configuration: read once from the environment (and an optional instance config file).

Every setting has one name, one default and one check. A wrong value stops start-up with a
single line that names the variable and says why (`ConfigError`), never with a traceback.
"""

from __future__ import annotations

import base64
import binascii
import os
import runpy
from dataclasses import dataclass, fields, replace
from pathlib import Path


class ConfigError(Exception):
    """A setting is wrong; the message is one line naming the variable."""


DEFAULT_API_BASE = "https://api.weixin.qq.com/cgi-bin/"


@dataclass(frozen=True)
class Config:
    instance_path: Path
    env: str = "development"  # development | demo | testing | production
    wechat_token: str = "volbot-dev-token"
    wechat_appid: str = "wxvolbotdev0000001"
    wechat_secret: str = "volbot-dev-secret"
    wechat_aes_key: str | None = None
    wechat_api_base: str = DEFAULT_API_BASE
    database_url: str | None = None
    redis_url: str | None = None
    secret_key: str = "dev-secret-key-change-me"
    pii_key: str = "dev-pii-key-change-me"
    # Protocol tolerances
    timestamp_tolerance: int = 300  # seconds a signed request may be old (0 = unchecked)
    reply_deadline: float = 4.5  # seconds from the request's arrival; WeChat gives up at 5
    # Seconds a whole request may wait in a web worker before it is refused unread (503):
    # past it the answer would come too late for WeChat (bot/gunicorn_worker.py). 0: never.
    queue_budget: float = 2.0
    dedup_ttl: int = 600  # seconds a MsgId is remembered (WeChat retries within ~15 s)
    max_body: int = 64 * 1024
    # Dialogue
    state_idle: int = 1800  # seconds before an idle form expires
    resume_window: int = 24 * 3600  # an expired form is offered back for this long

    @property
    def safe_mode(self) -> bool:
        return bool(self.wechat_aes_key)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{self.instance_path / 'volbot.sqlite3'}"


ENV_NAMES = {
    "env": "VOLBOT_ENV",
    "wechat_token": "WECHAT_TOKEN",
    "wechat_appid": "WECHAT_APPID",
    "wechat_secret": "WECHAT_SECRET",
    "wechat_aes_key": "WECHAT_AES_KEY",
    "wechat_api_base": "WECHAT_API_BASE",
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "secret_key": "SECRET_KEY",
    "pii_key": "PII_KEY",
    "timestamp_tolerance": "WECHAT_TIMESTAMP_TOLERANCE",
    "reply_deadline": "REPLY_DEADLINE",
    "queue_budget": "VOLBOT_QUEUE_BUDGET",
    "dedup_ttl": "DEDUP_TTL",
    "state_idle": "STATE_IDLE_SECONDS",
    "resume_window": "RESUME_WINDOW_SECONDS",
}


def normalise_database_url(url: str) -> str:
    """Accept the usual spellings and pick the psycopg2 driver for PostgreSQL (its C round
    trip costs about half of psycopg 3's CPU: bench/turns.py)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def default_instance_path() -> Path:
    return Path(os.environ.get("VOLBOT_INSTANCE", Path.cwd() / "instance")).resolve()


def load_config(instance_path: str | Path | None = None, environ=None, **overrides) -> Config:
    """Build the configuration: defaults < instance/config.py < environment < overrides."""
    environ = os.environ if environ is None else environ
    instance = Path(instance_path).resolve() if instance_path else default_instance_path()
    values: dict = {}
    config_file = instance / "config.py"
    if config_file.is_file():
        try:
            loaded = runpy.run_path(str(config_file))
        except Exception as e:  # noqa: BLE001 - any error in the file means the same
            raise ConfigError(f"{config_file}: cannot be read ({type(e).__name__}: {e})".splitlines()[0])
        for f in fields(Config):
            key = ENV_NAMES.get(f.name, f.name.upper())
            if key in loaded:
                values[f.name] = loaded[key]
    for name, var in ENV_NAMES.items():
        if environ.get(var) not in (None, ""):
            values[name] = environ[var]
    values.update(overrides)
    config = Config(instance_path=instance)
    typed = {}
    for f in fields(Config):
        if f.name in values:
            typed[f.name] = _coerce(f.name, values[f.name], getattr(config, f.name))
    config = replace(config, **typed)
    validate(config)
    return config


def _coerce(name: str, value, default):
    if isinstance(default, bool) or default is None or isinstance(value, type(default)):
        return value
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{ENV_NAMES.get(name, name)}: expected a {type(default).__name__}, got {value!r}")


def validate(config: Config) -> None:
    if config.wechat_aes_key is not None:
        key = config.wechat_aes_key
        if len(key) != 43:
            raise ConfigError(f"WECHAT_AES_KEY: must be 43 characters (EncodingAESKey), got {len(key)}")
        try:
            raw = base64.b64decode(key + "=", validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("WECHAT_AES_KEY: not valid base64 (letters and digits only)")
        if len(raw) != 32:
            raise ConfigError("WECHAT_AES_KEY: does not decode to a 32-byte AES key")
    if not config.wechat_token:
        raise ConfigError("WECHAT_TOKEN: must not be empty")
    if config.env not in ("development", "demo", "testing", "production"):
        raise ConfigError(f"VOLBOT_ENV: unknown environment {config.env!r}")
    if config.env == "production":
        defaults = Config(instance_path=config.instance_path)
        for name in ("secret_key", "pii_key", "wechat_token", "wechat_appid", "wechat_secret"):
            value = getattr(config, name)
            if value == getattr(defaults, name) or value.startswith("dev-"):
                raise ConfigError(f"{ENV_NAMES[name]}: must be set in production (the development value is public)")
    if config.redis_url and not config.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL: must start with redis://, rediss:// or unix://")
    if not config.wechat_api_base.startswith(("http://", "https://")):
        raise ConfigError("WECHAT_API_BASE: must be an http:// or https:// URL")
    if config.timestamp_tolerance < 0:
        raise ConfigError("WECHAT_TIMESTAMP_TOLERANCE: must be 0 (unchecked) or a positive number of seconds")
    if config.dedup_ttl < 300:
        raise ConfigError("DEDUP_TTL: must be at least 300 seconds (retries must be recognised for 5 minutes)")
    if config.reply_deadline <= 0 or config.reply_deadline >= 5:
        raise ConfigError("REPLY_DEADLINE: must be between 0 and 5 seconds")
    if config.queue_budget < 0 or config.queue_budget >= config.reply_deadline:
        raise ConfigError("VOLBOT_QUEUE_BUDGET: must be 0 (never refuse) or less than REPLY_DEADLINE")
    if config.database_url and not normalise_database_url(config.database_url).startswith(
        ("sqlite", "postgresql")
    ):
        raise ConfigError("DATABASE_URL: only sqlite:// and postgresql:// are supported")
