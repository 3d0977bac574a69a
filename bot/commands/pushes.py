"""`volbot` commands for pushes and the Volunteer Bus: the queue worker
and scheduler, push progress, bus visits, the custom menu and QR codes."""

from __future__ import annotations

from datetime import date, time

import click

from bot.commands import shared_group


def _services():
    from bot.cli import build_services

    return build_services()


def _daemon_services(wait: float = 30.0):
    """Services for a long-running process (worker, scheduler): the database or Redis may
    be briefly unavailable at start (restarting, or SQLite's write lock held by a big
    fan-out), so keep checking for `wait` seconds before giving up with the usual line."""
    import time as clock

    from bot.cli import build_services
    from bot.config import ConfigError

    services = build_services(check=False)
    deadline = clock.monotonic() + wait
    while True:
        try:
            services.check()
            return services
        except ConfigError:
            if clock.monotonic() >= deadline:
                services.close()
                raise
            clock.sleep(1.0)


def _parsed(value: str | None, parse, expected: str):
    """`parse(value)` for a CLI option (None stays None); a bad value is one clear line."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError:
        raise click.BadParameter(f"expected {expected}, got {value!r}")


def _day(value: str | None) -> date | None:
    return _parsed(value, date.fromisoformat, "YYYY-MM-DD")


def _time(value: str | None) -> time | None:
    return _parsed(value, time.fromisoformat, "HH:MM")


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
    @click.option("--name", default=None, help="Worker name (unique per host).")
    def worker(burst, name):
        """Send queued pushes (RQ worker); resumes lost jobs from SQL at start."""
        from bot import speech
        from pushes.worker import run_worker

        services = _daemon_services()
        try:
            speech.install(speech.from_config(services))  # SPEECH_ENGINE: voice jobs on the same queue
            run_worker(services, burst=burst, name=name)
        finally:
            services.close()

    @main.command()
    @click.option("--interval", default=1.0, type=float, help="Seconds between passes.")
    @click.option("--once", is_flag=True, help="One pass, then exit.")
    def scheduler(interval, once):
        """Queue due pushes and reminders, re-queue lost jobs (a pass every INTERVAL s)."""
        from pushes.scheduler import run_forever, run_pass

        services = _daemon_services()
        try:
            if once:
                click.echo(run_pass(services))
            else:
                click.echo(f"scheduler: a pass every {interval:g} s; Ctrl-C to stop")
                run_forever(services, interval)
        finally:
            services.close()

    @main.group()
    def push():
        """Pushes: progress and recovery."""

    @push.command("status")
    @click.option("--batch", default=None, help="One fan-out, e.g. bus-12-0 or announcement-3.")
    def push_status(batch):
        """How many pushes are queued, sent, delivered or failed, why (WeChat's answers in
        plain words), by channel, and which kinds are paused."""
        from pushes.worker import status
        from rules import notices
        from store.dead_letters import counts as dead_letters
        from store.models import Push

        services = _services()
        try:
            with services.db.transaction() as session:
                counts = status(session, batch)
                dead = dead_letters(session)
                where = (Push.batch == batch,) if batch else ()
                outcomes = notices.outcomes(session, *where)
                channels = notices.by_channel(session, *where)
                paused = notices.paused(session)
            total = sum(counts.values())
            waiting = sum(counts.get(s, 0) for s in ("pending", "queued", "sending"))
            done = sum(counts.get(s, 0) for s in ("sent", "delivered"))
            click.echo(f"{batch or 'all pushes'}: {total} total · {waiting} queued · {done} sent "
                       f"({counts.get('delivered', 0)} delivered) · {counts.get('failed', 0)} failed"
                       f" · {counts.get('cancelled', 0)} cancelled")
            for state in sorted(counts):
                click.echo(f"  {state:10} {counts[state]}")
            click.echo("by channel: " + (" · ".join(f"{c} {n}" for c, n in sorted(channels.items())) or "none"))
            reasons = [(s, m, n) for s, m, n in outcomes if m]
            if reasons:
                click.echo("why (not sent, held or waiting):")
                for state, said, n in reasons:
                    click.echo(f"  {state:10} {n:>7}  {said}")
            for kind, p in sorted(paused.items()):
                click.echo(f"PAUSED {kind}: {p.reason} (template {p.template_id}, since "
                           f"{p.paused_at:%Y-%m-%d %H:%M} UTC); fix the template, then "
                           f"`volbot push resume-kind {kind}`")
            click.echo(f"dead letters: {sum(dead.values())}"
                       + (" (" + ", ".join(f"{q} {n}" for q, n in sorted(dead.items())) + "; "
                          "see `volbot push dead-letters`)" if dead else ""))
        finally:
            services.close()

    @push.command("dead-letters")
    @click.option("--limit", default=20, type=int, help="How many, newest first.")
    def push_dead_letters(limit):
        """Queue items set aside because they failed on their own (receipts, outcomes, due work)."""
        from store.dead_letters import latest

        services = _services()
        try:
            with services.db.transaction() as session:
                rows = latest(session, limit)
                if not rows:
                    click.echo("no dead letters")
                for row in rows:
                    click.echo(f"{row.last_at:%Y-%m-%d %H:%M:%S} {row.queue} ×{row.failures} {row.item_key}\n"
                               f"  item:  {row.item[:300]}\n  error: {row.error[:300]}")
        finally:
            services.close()

    @push.command("resume-kind")
    @click.argument("kind")
    def push_resume_kind(kind):
        """Lift the pause of a kind whose template WeChat banned (43116), once the district
        has a new template id for it (WECHAT_TEMPLATE_<KIND>): its waiting pushes go."""
        from rules import notices

        services = _services()
        try:
            with services.db.transaction() as session:
                if kind not in notices.paused(session):
                    raise click.ClickException(f"{kind} is not paused")
                released = notices.resume(session, kind, services.clock.now())
            click.echo(f"{kind}: resumed, {released} waiting pushes due now")
        finally:
            services.close()

    @push.command("resume")
    def push_resume():
        """One scheduler pass: queue due pushes, re-queue jobs lost with Redis."""
        from pushes.scheduler import run_pass

        services = _services()
        try:
            click.echo(run_pass(services))
        finally:
            services.close()

    # ---- the bus ----------------------------------------------------------------------------

    @main.group("bus")
    def bus_group():
        """Volunteer Bus visits (each change is pushed once to every subscriber)."""

    def bus_action(fn):
        """Run `fn(session, now)` in one transaction; a BusError is one clear line."""
        from rules.bus import BusError

        services = _services()
        try:
            with services.db.transaction() as session:
                return fn(session, services.clock.now())
        except BusError as e:
            raise click.ClickException(str(e))
        finally:
            services.close()

    def describe(visit) -> str:
        from rules import bus

        return (f"#{visit.id} {visit.community.name}({visit.community.code}) {bus.when_text(visit)} "
                f"{visit.place} [{bus.service_names(visit.services)}] {visit.state} change {visit.change_no}")

    def fanned(session, visit) -> str:
        from pushes.worker import status
        from rules import bus

        n = sum(status(session, bus.batch_id(visit)).values())
        return f"{n} subscriber pushes recorded (batch {bus.batch_id(visit)}; `volbot push status --batch {bus.batch_id(visit)}`)"

    @bus_group.command("schedule")
    @click.option("--community", required=True, help="Community code, e.g. KW001.")
    @click.option("--date", "day", required=True, help="YYYY-MM-DD (Beijing)")
    @click.option("--start", required=True, help="HH:MM")
    @click.option("--end", required=True, help="HH:MM")
    @click.option("--place", required=True)
    @click.option("--services", required=True, help="Codes, names or numbers 1-12, comma separated.")
    @click.option("--route", default=None, help="Route code (created if new).")
    def bus_schedule(community, day, start, end, place, services, route):
        """Schedule a visit and announce it to the community's subscribers."""
        from rules import bus

        def run(session, now):
            starts_at, ends_at = bus.local_span(_day(day), _time(start), _time(end))
            visit = bus.schedule(session, community=bus.community_by_code(session, community), starts_at=starts_at,
                                 ends_at=ends_at, place=place, services=bus.parse_services(services), now=now,
                                 route=bus.route_by_code(session, route) if route else None, created_by="cli")
            return f"scheduled {describe(visit)}\n{fanned(session, visit)}"

        click.echo(bus_action(run))

    @bus_group.command("change")
    @click.argument("visit_id", type=int)
    @click.option("--date", "day", default=None)
    @click.option("--start", default=None)
    @click.option("--end", default=None)
    @click.option("--place", default=None)
    @click.option("--services", default=None)
    @click.option("--reason", default="")
    def bus_change(visit_id, day, start, end, place, services, reason):
        """Change a visit; every subscriber is told once about this change."""
        from rules import bus
        from store.models import BusVisit

        def run(session, now):
            visit = session.get(BusVisit, visit_id)
            if visit is None:
                raise bus.BusError(f"没有编号为 {visit_id} 的到访。")
            starts_at = ends_at = None
            if day or start or end:
                cur_s, cur_e = visit.starts_at.astimezone(bus.CHINA), visit.ends_at.astimezone(bus.CHINA)
                starts_at, ends_at = bus.local_span(_day(day) or cur_s.date(), _time(start) or cur_s.time(),
                                                    _time(end) or cur_e.time())
            bus.change(session, visit, now=now, starts_at=starts_at, ends_at=ends_at, place=place,
                       services=bus.parse_services(services) if services else None, reason=reason)
            return f"changed {describe(visit)}\n{fanned(session, visit)}"

        click.echo(bus_action(run))

    @bus_group.command("cancel")
    @click.argument("visit_id", type=int)
    @click.option("--reason", default="")
    def bus_cancel(visit_id, reason):
        """Cancel a visit; every subscriber is told once."""
        from rules import bus
        from store.models import BusVisit

        def run(session, now):
            visit = session.get(BusVisit, visit_id)
            if visit is None:
                raise bus.BusError(f"没有编号为 {visit_id} 的到访。")
            bus.cancel(session, visit, now=now, reason=reason)
            return f"cancelled {describe(visit)}\n{fanned(session, visit)}"

        click.echo(bus_action(run))

    @bus_group.command("list")
    @click.option("--community", default=None, help="Only this community code.")
    @click.option("--limit", default=20, type=int)
    def bus_list(community, limit):
        """Upcoming visits."""
        from rules import bus

        def run(session, now):
            ids = [bus.community_by_code(session, community).id] if community else None
            visits = bus.upcoming(session, now, ids, limit)
            return "\n".join(describe(v) for v in visits) or "no upcoming visits"

        click.echo(bus_action(run))

    # ---- the custom menu and QR codes ----------------------------------------------------------

    menu = shared_group(main, "menu", "The custom menu at the bottom of the chat.")

    @menu.command("push")
    def menu_push():
        """Create the custom menu on WeChat from menus/custom_menu.json."""
        from pushes.client import WeChatError, client_for

        services = _services()
        data = _custom_menu(services.config.pages_url)
        if not services.config.pages_url:
            click.echo("PUBLIC_URL is not set: the buttons that open the web pages are left out", err=True)
        try:
            client_for(services.config, services.redis).create_menu(data)
            click.echo(f"menu created: {', '.join(b['name'] for b in data['button'])}")
        except WeChatError as e:
            raise click.ClickException(f"WeChat refused the menu: {e}")
        finally:
            services.close()


def _custom_menu(pages_url: str = "") -> dict:
    """The custom menu as WeChat's menu/create takes it (checked by menus.custom_menu), its
    page buttons pointing at `pages_url`."""
    try:
        from menus import custom_menu
    except ImportError:  # the menu module is optional; the data file is what matters
        import json
        from pathlib import Path

        return json.loads((Path(__file__).resolve().parents[2] / "menus" / "custom_menu.json").read_text("utf-8"))
    return custom_menu.load(pages_url=pages_url)

