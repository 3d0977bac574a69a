"""The long-lived parts of a process, built once from the configuration: database, Redis,
protocol, dialogue engine, clock. The web app, the CLI and the workers all use this.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import redis as redis_lib

from bot.config import Config, ConfigError
from bot.protocol import Protocol
from dialogue.context import Settings
from store import redis as redis_store
from store import sealing
from store.db import Database

log = logging.getLogger("volbot")


@dataclass
class Clock:
    """Real time, shifted by `offset` (tests and the demo move it forward)."""

    offset: timedelta = field(default_factory=timedelta)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def timestamp(self) -> float:
        return time.time() + self.offset.total_seconds()

    def advance(self, **kwargs) -> None:
        self.offset += timedelta(**kwargs)


class Services:
    def __init__(self, config: Config, *, check: bool = True):
        self.config = config
        config.instance_path.mkdir(parents=True, exist_ok=True)
        self.clock = Clock()
        self.db = Database(config.sqlalchemy_url)
        url, self._embedded = redis_store.resolve_url(config.redis_url, config.instance_path)
        self.redis_url = url
        self.redis: redis_lib.Redis = redis_store.connect(url)
        self.protocol = Protocol(config.wechat_token, config.wechat_appid, config.wechat_aes_key,
                                 config.timestamp_tolerance)
        self.dispatch_settings = config.dispatch_settings()
        self.attendance_settings = config.attendance_settings()
        self.push_settings = config.push_settings()
        self.timebank_policy = config.timebank_policy()
        self.keyring = config.keyring()
        sealing.use(self.keyring)  # the process's: the phone columns read and write with it
        self.settings = Settings(pii_key=self.keyring, state_idle=config.state_idle,
                                 resume_window=config.resume_window, env=config.env,
                                 dispatch=self.dispatch_settings, attendance=self.attendance_settings,
                                 timebank=self.timebank_policy, pages_url=config.pages_url,
                                 notices_url=config.notices_page, template_ids=dict(config.template_ids or {}))
        self._engine = None
        if check:
            self.check()

    def check(self) -> None:
        """Fail start-up with one clear line when a backing service is unreachable."""
        try:
            self.db.ping()
        except Exception as e:  # noqa: BLE001 - any driver error means the same to the operator
            raise ConfigError(f"DATABASE_URL: cannot connect ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
        try:
            self.redis.ping()
        except Exception as e:  # noqa: BLE001 - any client error means the same to the operator
            raise ConfigError(f"REDIS_URL: cannot connect ({type(e).__name__}: {e})")

    @property
    def engine(self):
        if self._engine is None:
            from dialogue.engine import Engine
            from handlers import registry
            from menus import main_menu

            self._engine = Engine(registry, main_menu())
        return self._engine

    def close(self) -> None:
        self.db.dispose()
        try:
            self.redis.close()
        except Exception:  # noqa: BLE001 - closing: a connection already gone is fine
            pass
        if self._embedded is not None:  # started by this process: stopped unless others use it
            self._embedded.shutdown(unless_in_use=True)
            self._embedded = None
