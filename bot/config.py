"""Configuration: read once from the environment (and an optional instance config file).

Every setting has one name, one default and one check, here: the webhook's, the dialogue's,
the web server's, logging's and metrics', dispatch's and the push worker's. A wrong value
stops start-up with a single line that names the variable and says why (`ConfigError`),
never with a traceback. This is the only module that reads (or, for child processes and the
libraries that read their own variables, writes) the process environment.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
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
    pii_key: str = "dev-pii-key-change-me"  # the secret of key v1 (when PII_KEYS is unset)
    # Versioned keys for personal data (docs/privacy.md): "v1=<secret>,v2=<secret>"; unset
    # means v1 = PII_KEY. PII_KEY_ID names the key new values are written under.
    pii_keys: str = ""
    pii_key_id: str = "v1"
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
    # Speech to text for voice messages WeChat sent without Recognition (docs/engine.md):
    # "module:factory" returning a pushes.speech.SpeechToText; "" = none (the kind reply only).
    speech_engine: str = ""
    # "module:factory" returning a pushes.speech.Transcoder; "" = ffmpeg (if installed).
    speech_transcoder: str = ""
    # The web server (`volbot serve`, bot/gunicorn_conf.py)
    bind: str = "127.0.0.1:8000"  # comma-separated gunicorn binds
    web_workers: int = 0  # 0: one per core plus one (bot.gunicorn_conf.default_workers)
    threads: int = 1  # above 1: gunicorn's gthread pool (no slow-client protection)
    worker_timeout: int = 30
    graceful_timeout: int = 10
    keepalive: int = 65
    max_requests: int = 0  # recycle a worker after N requests (0: never)
    reuse_port: bool = True  # a listening socket per worker (SO_REUSEPORT)
    forwarded_allow_ips: str = "127.0.0.1"
    # How many proxies in front of the app set X-Forwarded-For/-Proto (werkzeug's ProxyFix):
    # 1 behind the shipped nginx. 0 trusts no header: the client is the peer's address.
    trusted_proxies: int = 0
    access_log: bool = False
    # Logs and metrics
    log_format: str = "text"  # text | json (`volbot serve` defaults to json)
    metrics_dir: str | None = None  # prometheus_client's multiprocess folder (set under volbot serve)
    # Dispatch (rules.dispatch.Settings)
    dispatch_offer_minutes: int = 30  # an offer waits this long for its answer
    dispatch_confirm_hours: int = 48  # a finished service is confirmed by itself after this
    dispatch_cap_factor: int = 2  # minutes credited without approval, × the typical duration
    # Attendance (rules.attendance.Settings)
    attendance_cutoff_hours: int = 24  # cancelling later than this before a shift is late notice
    attendance_approval_above: int = 2  # more no-shows + late notices (90 days): sign-ups need approval
    callout_hours_before: int = 48  # a shift still below its minimum this close is called out for
    # The time bank (rules.timebank.Policy); each default keeps the bank as it was
    timebank_overflow: str = "pool"  # above the storage cap: pool | family (linked family first)
    timebank_grant_min_age: int = 0  # pool grants only to residents this old or older (0: any)
    timebank_daily_cap_minutes: int = 0  # minutes one volunteer may earn per service day (0: none)
    timebank_idle_expiry_days: int = 0  # an untouched balance goes to the pool after this (0: never)
    # The push worker (pushes.worker.PushSettings)
    push_rate: float = 50.0  # sends per second, all workers together
    push_burst: float = 0.0  # 0: the rate
    push_max_attempts: int = 6
    push_lease_seconds: int = 60
    push_chunk: int = 50  # push ids per queue job
    push_claim: int = 10  # rows claimed at a time within a job
    push_backoff: float = 5.0  # seconds before the first retry (doubling)
    push_backoff_max: float = 3600.0
    # WECHAT_TEMPLATE_<KIND>: the account's template id of each kind (menus/templates.yaml)
    template_ids: dict | None = None
    # Notices (rules.notices, rules.announcements)
    notices_url: str | None = None  # the page with the wx-open-subscribe buttons, offered in chat
    announcement_approval: str = "parent"  # parent: a level above the author approves; none
    mass_send_monthly: int = 4  # mass sends (群发) a month the service account may make
    # Certificates: a .ttf/.ttc with Chinese glyphs (else the Debian font paths are tried)
    cjk_font: str | None = None
    # `volbot console add/password`: the password, instead of a prompt
    console_password: str | None = None
    # The console's security (docs/console.md): a session ends after this many idle minutes;
    # coordinators of these roles (comma-separated; "" none) must use a second factor (TOTP).
    console_idle_minutes: int = 30
    console_2fa_roles: str = "brigade"
    # Strict-Transport-Security max-age sent in production (0: none).
    hsts_seconds: int = 31536000
    # Audit log entries older than this many days are deleted (0: kept for ever; else at
    # least 180, the six months China's Cybersecurity Law asks logs to be kept).
    audit_retention_days: int = 365
    # Where the browser simulator POSTs its pushes; "" is this server's own /wechat at the
    # first VOLBOT_BIND address. Never taken from a request (its Host header is the sender's).
    simulator_webhook_url: str = ""
    # The pages at /m: map tiles under the SVG maps ("https://…/{z}/{x}/{y}.png"; "" = none,
    # the district's own coordinates only, as on an intranet)
    pages_map_tiles: str = ""
    # Where the site is reached from outside ("https://vol.example.cn"): the chat's links to
    # the pages and the custom menu's view buttons. "" = no links (the chat works alone).
    public_url: str = ""

    @property
    def safe_mode(self) -> bool:
        return bool(self.wechat_aes_key)

    @property
    def console_2fa_required_roles(self) -> frozenset[str]:
        """"none" (or an empty value in instance/config.py) requires it of nobody."""
        return frozenset(r.strip() for r in self.console_2fa_roles.split(",") if r.strip() not in ("", "none"))

    @property
    def simulator_target(self) -> str:
        """The webhook URL the simulator posts to (from configuration only)."""
        if self.simulator_webhook_url:
            return self.simulator_webhook_url
        bind = self.bind.split(",")[0].strip()
        if bind.startswith("unix:"):
            return "http://127.0.0.1:8000/wechat"
        host, _, port = bind.rpartition(":")
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/wechat"

    def dispatch_settings(self):
        """The dispatch rules' tunables (`rules.dispatch.Settings`)."""
        from rules.dispatch import Settings

        return Settings(self.dispatch_offer_minutes, self.dispatch_confirm_hours, self.dispatch_cap_factor)

    def attendance_settings(self):
        """The attendance rules' tunables (`rules.attendance.Settings`)."""
        from rules.attendance import Settings

        return Settings(self.attendance_cutoff_hours, self.attendance_approval_above, self.callout_hours_before)
    def timebank_policy(self):
        """The time bank's district rules (`rules.timebank.Policy`), as plain values."""
        from rules.timebank import Policy

        return Policy(overflow=self.timebank_overflow, grant_min_age=self.timebank_grant_min_age,
                      daily_cap_minutes=self.timebank_daily_cap_minutes,
                      idle_expiry_days=self.timebank_idle_expiry_days)

    def push_settings(self):
        """The push worker's and scheduler's tunables (`pushes.worker.PushSettings`)."""
        from pushes.worker import PushSettings

        return PushSettings(rate=self.push_rate, burst=self.push_burst or None, max_attempts=self.push_max_attempts,
                            lease_seconds=self.push_lease_seconds, chunk=self.push_chunk, claim=self.push_claim,
                            backoff=self.push_backoff, backoff_max=self.push_backoff_max)

    def keyring(self):
        """The personal-data keyring (`store.sealing.Keyring`): every key still readable,
        and the current one."""
        from store.sealing import Keyring, KeyringError

        if self.pii_keys.strip():
            versions = []
            for item in re.split(r"[,\s]+", self.pii_keys.strip()):
                version, sep, secret = item.partition("=")
                if not sep:
                    raise ConfigError(f"PII_KEYS: expected id=secret pairs (v1=...,v2=...), got {version[:8]!r}...")
                versions.append((version.strip(), secret.strip()))
        else:
            versions = [("v1", self.pii_key)]
        versions.sort(key=lambda v: int(v[0][1:]) if re.fullmatch(r"v\d+", v[0]) else 0)
        try:
            return Keyring(tuple(versions), self.pii_key_id)
        except KeyringError as e:
            raise ConfigError(f"{'PII_KEY_ID' if 'current' in str(e) else 'PII_KEYS'}: {e}") from None

    @property
    def notices_page(self) -> str:
        """Where the chat sends people to consent to notices: NOTICES_URL, else the pages'
        own /m/notices (when PUBLIC_URL is set), else "" (the chat explains where)."""
        return self.notices_url or (self.pages_url + "/notices" if self.pages_url else "")

    @property
    def pages_url(self) -> str:
        """The web pages' base URL (PUBLIC_URL + /m), or "" without PUBLIC_URL."""
        return self.public_url.rstrip("/") + "/m" if self.public_url else ""

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
    "pii_keys": "PII_KEYS",
    "pii_key_id": "PII_KEY_ID",
    "timestamp_tolerance": "WECHAT_TIMESTAMP_TOLERANCE",
    "reply_deadline": "REPLY_DEADLINE",
    "queue_budget": "VOLBOT_QUEUE_BUDGET",
    "dedup_ttl": "DEDUP_TTL",
    "state_idle": "STATE_IDLE_SECONDS",
    "resume_window": "RESUME_WINDOW_SECONDS",
    "speech_engine": "SPEECH_ENGINE",
    "speech_transcoder": "SPEECH_TRANSCODER",
    "bind": "VOLBOT_BIND",
    "web_workers": "WEB_CONCURRENCY",
    "threads": "VOLBOT_THREADS",
    "worker_timeout": "VOLBOT_WORKER_TIMEOUT",
    "graceful_timeout": "VOLBOT_GRACEFUL_TIMEOUT",
    "keepalive": "VOLBOT_KEEPALIVE",
    "max_requests": "VOLBOT_MAX_REQUESTS",
    "reuse_port": "VOLBOT_REUSE_PORT",
    "forwarded_allow_ips": "FORWARDED_ALLOW_IPS",
    "trusted_proxies": "VOLBOT_TRUSTED_PROXIES",
    "access_log": "VOLBOT_ACCESS_LOG",
    "log_format": "VOLBOT_LOG_FORMAT",
    "metrics_dir": "PROMETHEUS_MULTIPROC_DIR",
    "dispatch_offer_minutes": "DISPATCH_OFFER_MINUTES",
    "dispatch_confirm_hours": "DISPATCH_CONFIRM_HOURS",
    "dispatch_cap_factor": "DISPATCH_CAP_FACTOR",
    "attendance_cutoff_hours": "ATTENDANCE_CUTOFF_HOURS",
    "attendance_approval_above": "ATTENDANCE_APPROVAL_ABOVE",
    "callout_hours_before": "CALLOUT_HOURS_BEFORE",
    "timebank_overflow": "TIMEBANK_OVERFLOW",
    "timebank_grant_min_age": "TIMEBANK_GRANT_MIN_AGE",
    "timebank_daily_cap_minutes": "TIMEBANK_DAILY_CAP_MINUTES",
    "timebank_idle_expiry_days": "TIMEBANK_IDLE_EXPIRY_DAYS",
    "push_rate": "PUSH_RATE",
    "push_burst": "PUSH_BURST",
    "push_max_attempts": "PUSH_MAX_ATTEMPTS",
    "push_lease_seconds": "PUSH_LEASE_SECONDS",
    "push_chunk": "PUSH_CHUNK",
    "push_claim": "PUSH_CLAIM",
    "push_backoff": "PUSH_BACKOFF_SECONDS",
    "push_backoff_max": "PUSH_BACKOFF_MAX_SECONDS",
    "notices_url": "NOTICES_URL",
    "announcement_approval": "ANNOUNCEMENT_APPROVAL",
    "mass_send_monthly": "MASS_SEND_MONTHLY",
    "cjk_font": "VOLBOT_CJK_FONT",
    "console_password": "VOLBOT_CONSOLE_PASSWORD",
    "console_idle_minutes": "VOLBOT_CONSOLE_IDLE_MINUTES",
    "console_2fa_roles": "VOLBOT_2FA_REQUIRED_ROLES",
    "hsts_seconds": "VOLBOT_HSTS_SECONDS",
    "audit_retention_days": "VOLBOT_AUDIT_RETENTION_DAYS",
    "simulator_webhook_url": "SIMULATOR_WEBHOOK_URL",
    "pages_map_tiles": "PAGES_MAP_TILES",
    "public_url": "PUBLIC_URL",
}
TEMPLATE_PREFIX = "WECHAT_TEMPLATE_"
POSITIVE = ("dispatch_offer_minutes", "dispatch_confirm_hours", "dispatch_cap_factor", "callout_hours_before", "push_rate",
            "push_max_attempts", "push_lease_seconds", "push_chunk", "push_claim", "push_backoff",
            "push_backoff_max", "threads", "worker_timeout", "graceful_timeout", "console_idle_minutes")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


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


def export(**variables: str | None) -> None:
    """Set (or, with None, remove) environment variables for what reads them after us: the
    processes we start (gunicorn's workers load this configuration again) and libraries
    that read their own (prometheus_client's PROMETHEUS_MULTIPROC_DIR)."""
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def child_environ(**variables: str) -> dict[str, str]:
    """The environment for a child process: ours, with `variables` set."""
    return {**os.environ, **variables}


def environ_value(name: str) -> str | None:
    """One variable of the process environment, for a caller that must know whether the
    operator set it (not for settings: those are fields of `Config`)."""
    return os.environ.get(name)


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
    templates = {key[len(TEMPLATE_PREFIX):].lower(): value for key, value in environ.items()
                 if key.startswith(TEMPLATE_PREFIX) and value}
    if templates:
        values["template_ids"] = {**(values.get("template_ids") or {}), **templates}
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
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE + _FALSE:
            return word in _TRUE
        raise ConfigError(f"{ENV_NAMES.get(name, name)}: expected yes or no (1/0), got {value!r}")
    if default is None or isinstance(value, type(default)):
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
            if name == "pii_key" and config.pii_keys.strip():
                continue  # PII_KEYS lists the keys instead
            if value == getattr(defaults, name) or value.startswith("dev-"):
                raise ConfigError(f"{ENV_NAMES[name]}: must be set in production (the development value is public)")
    keyring = config.keyring()
    if config.env == "production":
        for version, secret in keyring.versions:
            if secret.startswith("dev-") or len(secret) < 16:
                raise ConfigError(f"PII_KEYS: key {version} must be a secret of 16 characters or more, not a development value")
    if config.redis_url and not config.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL: must start with redis://, rediss:// or unix://")
    if not config.wechat_api_base.startswith(("http://", "https://")):
        raise ConfigError("WECHAT_API_BASE: must be an http:// or https:// URL")
    if config.announcement_approval not in ("parent", "none"):
        raise ConfigError("ANNOUNCEMENT_APPROVAL: must be parent or none")
    if not 0 <= config.mass_send_monthly <= 4:
        raise ConfigError("MASS_SEND_MONTHLY: 0 to 4 (WeChat's monthly limit for a service account)")
    if config.notices_url and not config.notices_url.startswith("https://"):
        raise ConfigError("NOTICES_URL: must be an https:// page (WeChat's subscribe button needs a JS-safe domain)")
    if config.timestamp_tolerance < 0:
        raise ConfigError("WECHAT_TIMESTAMP_TOLERANCE: must be 0 (unchecked) or a positive number of seconds")
    if config.dedup_ttl < 300:
        raise ConfigError("DEDUP_TTL: must be at least 300 seconds (retries must be recognised for 5 minutes)")
    if config.reply_deadline <= 0 or config.reply_deadline >= 5:
        raise ConfigError("REPLY_DEADLINE: must be between 0 and 5 seconds")
    if config.queue_budget < 0 or config.queue_budget >= config.reply_deadline:
        raise ConfigError("VOLBOT_QUEUE_BUDGET: must be 0 (never refuse) or less than REPLY_DEADLINE")
    for name in POSITIVE:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{ENV_NAMES[name]}: must be positive")
    if config.timebank_overflow not in ("pool", "family"):
        raise ConfigError(f"TIMEBANK_OVERFLOW: pool or family, got {config.timebank_overflow!r}")
    if not 0 <= config.timebank_grant_min_age <= 120:
        raise ConfigError("TIMEBANK_GRANT_MIN_AGE: must be 0 (any age) to 120")
    if not 0 <= config.timebank_daily_cap_minutes <= 24 * 60:
        raise ConfigError("TIMEBANK_DAILY_CAP_MINUTES: must be 0 (no cap) to 1440")
    for name in ("push_burst", "web_workers", "max_requests", "trusted_proxies", "hsts_seconds",
                 "attendance_cutoff_hours", "attendance_approval_above", "timebank_idle_expiry_days"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{ENV_NAMES[name]}: must not be negative")
    if 0 < config.audit_retention_days < 180:
        raise ConfigError("VOLBOT_AUDIT_RETENTION_DAYS: 0 (keep for ever) or at least 180 (six months)")
    unknown = config.console_2fa_required_roles - {"brigade", "detachment", "squad"}
    if unknown:
        raise ConfigError(f"VOLBOT_2FA_REQUIRED_ROLES: roles are brigade, detachment, squad; got {', '.join(sorted(unknown))}")
    if config.simulator_webhook_url and not config.simulator_webhook_url.startswith(("http://", "https://")):
        raise ConfigError("SIMULATOR_WEBHOOK_URL: must be an http:// or https:// URL")
    if config.log_format not in ("text", "json"):
        raise ConfigError(f"VOLBOT_LOG_FORMAT: text or json, got {config.log_format!r}")
    for name in ("speech_engine", "speech_transcoder"):
        spec = getattr(config, name)
        if spec and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", spec):
            raise ConfigError(f"{ENV_NAMES[name]}: expected module:factory (e.g. mypkg.stt:engine), got {spec!r}")
    if config.public_url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", config.public_url):
        raise ConfigError(f"PUBLIC_URL: expected http(s)://host[/path], got {config.public_url!r}")
    tiles = config.pages_map_tiles
    if tiles and not (tiles.startswith(("http://", "https://", "/")) and all(k in tiles for k in ("{z}", "{x}", "{y}"))):
        raise ConfigError("PAGES_MAP_TILES: expected a URL with {z}, {x} and {y} (e.g. https://tiles.example/{z}/{x}/{y}.png)")
    if not [b for b in config.bind.split(",") if b.strip()]:
        raise ConfigError("VOLBOT_BIND: must name at least one address")
    if config.database_url and not normalise_database_url(config.database_url).startswith(
        ("sqlite", "postgresql")
    ):
        raise ConfigError("DATABASE_URL: only sqlite:// and postgresql:// are supported")
