"""`volbot demo`: the whole service on one machine, as one process tree.

The supervisor prepares (one embedded Redis for everyone, migrations, the demo district
when the database is empty), then starts as child processes, all on loopback:

- web: the webhook, the coordinators' console and the simulator (`volbot run`),
- the WeChat API emulator (`volbot wechat-emulator`), whose callbacks go to our webhook,
- the queue worker (`volbot worker`) and the scheduler (`volbot scheduler`),

each with the same environment: REDIS_URL=unix://… of the embedded server and
WECHAT_API_BASE pointing at the emulator. Ctrl-C (or SIGTERM) stops every child, then the
embedded Redis (if this demo started it). If a child dies, the others are stopped too: a
half-running demo misleads. Any other `volbot` command on the same instance folder finds
the embedded Redis by itself (store.redis) and never stops it; a second demo there refuses.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bot.config import child_environ

STOP_GRACE = 8.0  # seconds a child gets to finish after SIGTERM
READY_TIMEOUT = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    url: str | None = None  # polled until it answers, when set
    process: subprocess.Popen | None = None


@dataclass
class Plan:
    host: str = "127.0.0.1"
    port: int = 8000
    emulator_port: int = 8100
    reset: bool = False
    children: list[Child] = field(default_factory=list)


def volbot_argv(*args: str) -> list[str]:
    """Run a `volbot` sub-command with this interpreter (works without the venv on PATH)."""
    return [sys.executable, "-c", "from bot.cli import main; main()", *args]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """On Linux, a child gets SIGTERM if the supervisor itself is killed (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def option_names(command) -> set[str]:
    return {opt for p in getattr(command, "params", []) for opt in getattr(p, "opts", [])}


def plan_children(main, plan: Plan) -> tuple[list[Child], list[str]]:
    """The children to start, from the commands this installation has; and the missing."""
    web = f"http://{plan.host}:{plan.port}"
    emulator = f"http://{plan.host}:{plan.emulator_port}"
    children, missing = [Child("web", volbot_argv("run", "--host", plan.host, "--port", str(plan.port)),
                               url=web + "/healthz")], []
    commands = main.commands
    if "wechat-emulator" in commands:
        opts = option_names(commands["wechat-emulator"])
        argv = ["wechat-emulator"]
        for flag, value in (("--host", plan.host), ("--port", str(plan.emulator_port)),
                            ("--callback-url", web + "/wechat"), ("--callback", web + "/wechat")):
            if flag in opts:
                argv += [flag, value]
        children.append(Child("wechat-emulator", volbot_argv(*argv), url=emulator + "/_emulator/stats"))
    else:
        missing.append("wechat-emulator")
    for name in ("worker", "scheduler"):
        if name in commands:
            children.append(Child(name, volbot_argv(name)))
        else:
            missing.append(name)
    return children, missing


class Supervisor:
    def __init__(self, plan: Plan, env: dict, out=None):
        self.plan = plan
        self.env = env
        self.out = out or sys.stdout
        self.stopping = False

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def start(self) -> None:
        for child in self.plan.children:
            child.process = subprocess.Popen(child.argv, env=self.env, start_new_session=True,
                                             preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            self.say(f"  started {child.name} (pid {child.process.pid})")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        for child in self.plan.children:
            while child.url:
                if child.process.poll() is not None:
                    self.say(f"volbot demo: {child.name} exited with status {child.process.returncode}")
                    return False
                try:
                    if requests.get(child.url, timeout=1).status_code < 500:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    self.say(f"volbot demo: {child.name} did not answer on {child.url} in {timeout:.0f} s")
                    return False
                time.sleep(0.2)
        return True

    def watch(self) -> int:
        """Block until Ctrl-C / SIGTERM (0) or until a child dies (1)."""
        while not self.stopping:
            for child in self.plan.children:
                code = child.process.poll()
                if code is not None:
                    self.say(f"volbot demo: {child.name} exited with status {code}; stopping the rest")
                    return 1
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        running = [c for c in self.plan.children if c.process and c.process.poll() is None]
        for child in running:
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in running:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        if running:
            self.say("volbot demo: stopped " + ", ".join(c.name for c in running))

    def request_stop(self, *_args) -> None:
        self.stopping = True


class SchemaOutdated(Exception):
    """The database lacks tables the models define; the message says what to do."""


def missing_tables(services) -> list[str]:
    from sqlalchemy import inspect

    from store.models import Base

    present = set(inspect(services.db.engine).get_table_names())
    return sorted(set(Base.metadata.tables) - present)


def prepare_database(services, reset: bool, say) -> object | None:
    """Migrate (after wiping, with --reset) and seed the demo district when empty.
    Returns the seeding summary, or None when the data was kept."""
    from sqlalchemy import MetaData

    from demo import district

    if reset:
        # Every table there is (reflected), not only today's models: an older checkout's
        # tables and Alembic's version table go too.
        existing = MetaData()
        existing.reflect(services.db.engine)
        existing.drop_all(services.db.engine)
        services.redis.flushdb()
        say("  --reset: emptied the database and Redis")
    services.db.upgrade(keyring=services.keyring)
    missing = missing_tables(services)
    if missing:
        # Before the first release the baseline migration is rewritten in place, so a
        # database from an older checkout can be "at head" and still lack new tables.
        raise SchemaOutdated(f"the database in the instance folder predates this code (no table "
                             f"{', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}); "
                             "run `volbot demo --reset` to start clean")
    with services.db.transaction() as session:
        if district.is_seeded(session):
            say("  the database already holds a district: kept as it is (--reset starts clean)")
            return None
        started = time.monotonic()
        summary = district.seed(session, now=services.clock.now(), pii_key=services.keyring)
    say(f"  seeded the demo district in {time.monotonic() - started:.1f} s:")
    for what, n in summary.counts.items():
        say(f"    {what}: {n}")
    return summary


def banner(plan: Plan, missing: list[str], say, env: dict) -> None:
    from demo import district

    web = f"http://{plan.host}:{plan.port}"
    say("")
    say("volunteer-bot demo is running:")
    say(f"  simulator (try the account in a browser)   {web}/simulator/")
    say(f"  coordinators' console                      {web}/console/")
    say(f"  webhook (point WeChat here)                {web}/wechat")
    say(f"  WeChat API emulator                        http://{plan.host}:{plan.emulator_port}/_emulator/stats")
    say("  console logins (password for all: %s):" % district.DEMO_PASSWORD)
    for username, role, team, _ in district.COORDINATORS:
        say(f"    {username:<14} {role:<11} {team}")
    if missing:
        say("  not started (command not installed): " + ", ".join(missing))
    say("  other volbot commands (e.g. `volbot bus schedule`) run from this folder use the demo's")
    say("  data and Redis by themselves; from another folder first:")
    say(f"    export VOLBOT_INSTANCE={env['VOLBOT_INSTANCE']}")
    say("Press Ctrl-C to stop everything.")


def claim_instance(instance: Path):
    """An exclusive lock on the instance folder's `demo.lock`, held (the open file) for as
    long as this demo runs; None when another demo holds it. The kernel drops it when the
    process dies, so a killed demo never blocks the next one."""
    import fcntl

    instance.mkdir(parents=True, exist_ok=True)
    handle = open(instance / "demo.lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def sync_consents(config, emulator: str, say) -> None:
    """Tell the freshly started emulator (WeChat's stand-in, whose memory starts empty) the
    notice consent our database holds, as WeChat would remember it."""
    from sqlalchemy import select

    from bot.services import Services
    from store.models import NoticeConsent

    services = Services(config)
    try:
        with services.db.session() as s:
            rows = [{"openid": o, "template_id": t, "grants": g, "sent": n} for o, t, g, n in s.execute(
                select(NoticeConsent.openid, NoticeConsent.template_id, NoticeConsent.grants, NoticeConsent.sent)
                .where(NoticeConsent.state == "accepted"))]
    finally:
        services.close()
    for i in range(0, len(rows), 5000):
        requests.post(f"{emulator}/_emulator/notice-consents", json=rows[i:i + 5000], timeout=30).raise_for_status()
    say(f"  notice consent of {len({r['openid'] for r in rows})} followers given to the emulator")


def run(main, *, host: str, port: int, emulator_port: int, reset: bool, out=None) -> int:
    """Everything `volbot demo` does; returns the exit status."""
    from bot.config import load_config
    from bot.services import Services
    from store.redis import resolve_url

    plan = Plan(host=host, port=port, emulator_port=emulator_port, reset=reset)
    sup = Supervisor(plan, env={}, out=out)
    env = child_environ()
    env.setdefault("VOLBOT_ENV", "demo")
    env.setdefault("WECHAT_API_BASE", f"http://{host}:{emulator_port}/cgi-bin/")
    env.setdefault("SIMULATOR_WEBHOOK_URL", f"http://{host}:{port}/wechat")
    # The demo's logins have a published password; a second factor would only stop the tour.
    env.setdefault("VOLBOT_2FA_REQUIRED_ROLES", "none")
    env.setdefault("PUBLIC_URL", f"http://{host}:{port}")  # the chat's links to the pages
    config = load_config(environ=env)
    env["VOLBOT_INSTANCE"] = str(config.instance_path)
    lock = claim_instance(Path(config.instance_path))
    if lock is None:
        sup.say(f"volbot demo: a demo is already running on {config.instance_path}; "
                "stop it (Ctrl-C in its terminal) or use another VOLBOT_INSTANCE")
        return 2
    embedded = None
    if not config.redis_url:  # reused if one runs on this folder already; stopped only if ours
        env["REDIS_URL"], embedded = resolve_url(None, Path(config.instance_path))
    sup.env = env
    try:
        sup.say(f"volbot demo: instance folder {config.instance_path}")
        services = Services(load_config(environ=env))
        try:
            prepare_database(services, reset, sup.say)
        except SchemaOutdated as e:
            sup.say(f"volbot demo: {e}")
            return 2
        finally:
            services.close()
        plan.children, missing = plan_children(main, plan)
        signal.signal(signal.SIGINT, sup.request_stop)
        signal.signal(signal.SIGTERM, sup.request_stop)
        sup.start()
        try:
            if not sup.wait_ready():
                return 1
            if "wechat-emulator" not in missing:
                sync_consents(load_config(environ=env), f"http://{host}:{emulator_port}", sup.say)
            banner(plan, missing, sup.say, env)
            return sup.watch()
        finally:
            sup.stop()
    finally:
        if embedded is not None:
            embedded.shutdown()
        lock.close()
