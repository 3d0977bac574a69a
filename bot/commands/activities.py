"""`volbot` commands for stations, projects, activities and their QR codes.

    volbot import places FILE          (CSV or YAML; upsert by code)
    volbot import activities FILE      (CSV or YAML, one row per shift)
    volbot project add --name N --team CODE [--description D]
    volbot activity add --project ID --title T (--place CODE | --address A [--lat --lng])
                        --shift "2026-12-01 09:00-11:00 上午场" … [--capacity N] [--skills 01,05]
    volbot activity close-overdue      (close forgotten check-outs; run it every few minutes)
    volbot activity callout --shift ID | --order NUMBER   (call out opted-in free volunteers)
    volbot pattern add --project ID --title T (--place CODE | --address A) --weekdays 6,7
                       --time 09:00-11:30 --from 2027-01-02 [--every 2] [--capacity N] [--min N]
                       [--weeks 4] [--team CODE] [--skip 2027-02-10,…] [--no-holidays-skip]
    volbot pattern list
    volbot pattern materialise         (make the coming weeks' shifts; the scheduler does it too)
    volbot qr --scene act:12 --out act12.png [--local]

`volbot qr` asks WeChat (through `pushes.client`) for a permanent parametric QR ticket and
renders the URL it returns, so scanning the print follows the account and sends the scene.
With `--local`, or while WECHAT_APPID is the development default and WECHAT_API_BASE the
official one, it renders the scene text itself: such a code works with a menu button of
type scancode_waitmsg (key SCAN_CHECKIN), not with WeChat's own scanner.
"""

from __future__ import annotations

import sys

import click
from sqlalchemy import select

from bot.cli import build_services
from bot.commands import shared_group
from store.bounded import prefixed_id

SCENE_PREFIXES = ("act:", "st:", "cm:")


def _fail(title: str, problems: list[str]) -> None:
    click.echo(f"{title}: {len(problems)} problem(s), nothing imported:", err=True)
    for p in problems:
        click.echo(f"  - {p}", err=True)
    sys.exit(1)


def api_configured(config) -> bool:
    """True when `volbot qr` can ask WeChat (or the emulator) for a real ticket."""
    from bot.config import DEFAULT_API_BASE, Config

    return config.wechat_appid != Config.wechat_appid or config.wechat_api_base != DEFAULT_API_BASE


def _check_scene(session, scene: str) -> str:
    """What the scene points at, for the operator; refuses unknown targets."""
    from store.models import Activity, Community, Place

    if not scene.startswith(SCENE_PREFIXES) or len(scene) > 64:
        raise click.BadParameter(f"{scene!r}: use act:<activity id>, st:<place id> or cm:<community code> (≤ 64 chars)")
    kind, _, ref = scene.partition(":")
    if kind == "cm":
        row = session.scalar(select(Community).where(Community.code == ref))
        return f"community {row.name}" if row else _missing(scene)
    row_id = prefixed_id(scene, kind + ":")
    row = session.get(Activity if kind == "act" else Place, row_id) if row_id else None
    if row is None:
        _missing(scene)
    return f"activity {row.title}" if kind == "act" else f"place {row.name}"


def _missing(scene: str):
    raise click.ClickException(f"nothing to print: {scene} does not exist")


def register(main: click.Group) -> None:
    imp = shared_group(main, "import", "Import district data from files.")
    project = shared_group(main, "project", "Volunteer projects (志愿项目).")
    activity = shared_group(main, "activity", "Activities and their shifts.")

    @imp.command("places")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    def import_places(file):
        """Create or update stations and plazas from a CSV or YAML FILE (by code).

        Columns: code, name, kind (station|plaza), community (code or name), address, lat,
        lng, opening_times, phone, team (code or name), services (separated by 、 or ,), radius_m,
        star_rating, description, active."""
        from rules import places

        svc = build_services()
        try:
            with svc.db.transaction() as s:
                created, updated = places.import_places(s, places.read_rows(file), svc.clock.now())
            click.echo(f"places: {created} created, {updated} updated")
        except places.BadFile as e:
            _fail(file, e.problems)
        finally:
            svc.close()

    @imp.command("activities")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    def import_activities(file):
        """Create activities from a CSV (or YAML) FILE, one row per shift.

        Columns: project (id or name), title, place (code) or address [lat, lng], start
        ('YYYY-MM-DD HH:MM', China time), end ('HH:MM' or full), shift (name), capacity,
        skills, description, radius_m. Rows with the same project, title, place and day
        are one activity."""
        from rules import activities as acts
        from rules.places import BadFile, read_rows

        svc = build_services()
        try:
            with svc.db.transaction() as s:
                created = acts.import_activities(s, read_rows(file), svc.clock.now())
                lines = [f"  act:{a.id}  {a.title}  ({len(a.shifts)} shift(s))" for a in created]
            click.echo(f"activities: {len(created)} created")
            click.echo("\n".join(lines))
        except (acts.BadActivities, BadFile) as e:
            _fail(file, e.problems)
        finally:
            svc.close()

    @project.command("add")
    @click.option("--name", required=True)
    @click.option("--team", "team_code", required=True, help="Code of the owner team.")
    @click.option("--description", default="")
    def project_add(name, team_code, description):
        """Add a project owned by a team."""
        from store.models import Project, Team

        svc = build_services()
        try:
            with svc.db.transaction() as s:
                team = s.scalar(select(Team).where(Team.code == team_code))
                if team is None:
                    raise click.ClickException(f"no team with code {team_code}")
                p = Project(name=name.strip(), team_id=team.id, description=description, created_at=svc.clock.now())
                s.add(p)
                s.flush()
                click.echo(f"project {p.id}: {p.name} ({team.name})")
        finally:
            svc.close()

    @activity.command("add")
    @click.option("--project", "project_ref", required=True, help="Project id or name.")
    @click.option("--title", required=True)
    @click.option("--place", "place_code", help="Code of the station or plaza.")
    @click.option("--address", default="")
    @click.option("--lat", type=float)
    @click.option("--lng", type=float)
    @click.option("--shift", "shift_specs", multiple=True, required=True,
                  help="'YYYY-MM-DD HH:MM-HH:MM [name]' in China time; repeat for more shifts.")
    @click.option("--capacity", default=10, show_default=True, type=int, help="Places per shift.")
    @click.option("--skills", default="", help="Wanted skills: needs-menu category codes, comma separated.")
    @click.option("--radius", "radius_m", type=int, help="Check-in radius in metres (default: the place's, or 300).")
    @click.option("--description", default="")
    def activity_add(project_ref, title, place_code, address, lat, lng, shift_specs, capacity, skills,
                     radius_m, description):
        """Add an activity with its shifts; prints its QR scene."""
        from rules import activities as acts
        from rules.places import split_list
        from store.models import Place

        svc = build_services()
        try:
            with svc.db.transaction() as s:
                try:
                    proj = acts.find_project(s, project_ref)
                    shifts = [acts.parse_shift(spec) for spec in shift_specs]
                except ValueError as e:
                    raise click.ClickException(str(e)) from None
                place = None
                if place_code:
                    place = s.scalar(select(Place).where(Place.code == place_code))
                    if place is None:
                        raise click.ClickException(f"no place with code {place_code}")
                elif not address:
                    raise click.ClickException("give --place or --address")
                try:
                    a = acts.add_activity(s, project=proj, title=title, shifts=shifts, capacity=capacity,
                                          place=place, address=address, lat=lat, lng=lng, radius_m=radius_m,
                                          skills=split_list(skills), description=description, now=svc.clock.now())
                except ValueError as e:
                    raise click.ClickException(str(e)) from None
                click.echo(f"activity {a.id}: {a.title}, scene {a.scene}")
                for sh in a.shifts:
                    click.echo(f"  shift {sh.id}: {acts.when_label(sh.starts_at, sh.ends_at)} {sh.name} ×{sh.capacity}")
        finally:
            svc.close()

    @activity.command("close-overdue")
    def close_overdue():
        """Close attendances whose check-out was forgotten (at the shift end, flagged)."""
        from rules import activities as acts

        svc = build_services()
        try:
            with svc.db.transaction() as s:
                closed = acts.close_overdue(s, svc.clock.now())
            click.echo(f"closed {len(closed)} forgotten check-out(s)")
        finally:
            svc.close()

    pattern = shared_group(main, "pattern", "Recurring shifts (固定排班).")

    @activity.command("callout")
    @click.option("--shift", "shift_id", type=int, help="Shift id.")
    @click.option("--order", "order_number", help="Order number (an order nobody accepted).")
    def callout(shift_id, order_number):
        """Call out opted-in volunteers free then (at most one call-out each a day)."""
        from rules import callouts
        from store.models import Order

        if bool(shift_id) == bool(order_number):
            raise click.UsageError("give exactly one of --shift or --order")
        svc = build_services()
        try:
            with svc.db.transaction() as s:
                if shift_id:
                    sent = callouts.send_callout(s, shift_id, svc.clock.now())
                else:
                    order = s.scalar(select(Order).where(Order.number == order_number))
                    if order is None:
                        raise click.ClickException(f"no order {order_number}")
                    sent = callouts.send_order_callout(s, order.id, svc.clock.now())
            click.echo(f"asked {sent} volunteer(s)")
        finally:
            svc.close()

    @pattern.command("add")
    @click.option("--project", "project_ref", required=True, help="Project id or name.")
    @click.option("--title", required=True)
    @click.option("--place", "place_code", help="Code of the station or plaza.")
    @click.option("--address", default="")
    @click.option("--weekdays", required=True, help="1 = Monday … 7 = Sunday, comma separated.")
    @click.option("--time", "times", required=True, help="HH:MM-HH:MM, China time.")
    @click.option("--from", "starts_on", required=True, help="First day, YYYY-MM-DD.")
    @click.option("--until", "ends_on", help="Last day, YYYY-MM-DD (default: none).")
    @click.option("--every", "every_weeks", default=1, show_default=True, type=int, help="Every n weeks.")
    @click.option("--capacity", default=10, show_default=True, type=int)
    @click.option("--min", "min_staff", type=int, help="Fewer signed than this is a shift at risk.")
    @click.option("--weeks", "weeks_ahead", default=4, show_default=True, type=int, help="Weeks made ahead.")
    @click.option("--team", "team_code", help="Team called out for it (default: the project's).")
    @click.option("--name", "shift_name", default="", help="Shift name, e.g. 上午场.")
    @click.option("--skills", default="", help="Wanted skills: needs-menu category codes, comma separated.")
    @click.option("--skip", default="", help="Further days without a shift, YYYY-MM-DD, comma separated.")
    @click.option("--no-holidays-skip", "keep_holidays", is_flag=True, help="Hold shifts on public holidays too.")
    def pattern_add(project_ref, title, place_code, address, weekdays, times, starts_on, ends_on, every_weeks,
                    capacity, min_staff, weeks_ahead, team_code, shift_name, skills, skip, keep_holidays):
        """Add a weekly (or every-n-weeks) pattern and make its shifts of the coming weeks."""
        from datetime import date

        from rules import activities as acts
        from rules import patterns, teams
        from rules.places import split_list
        from store.models import Activity, Place

        try:
            days = sorted({int(d) - 1 for d in weekdays.replace("，", ",").split(",") if d.strip()})
            start_time, end_time = (t.strip() for t in times.split("-"))
            first = date.fromisoformat(starts_on)
            last = date.fromisoformat(ends_on) if ends_on else None
        except ValueError:
            raise click.BadParameter("weekdays 1-7, --time HH:MM-HH:MM, dates YYYY-MM-DD") from None
        svc = build_services()
        try:
            with svc.db.transaction() as s:
                try:
                    proj = acts.find_project(s, project_ref)
                except ValueError as e:
                    raise click.ClickException(str(e)) from None
                place = s.scalar(select(Place).where(Place.code == place_code)) if place_code else None
                if place_code and place is None:
                    raise click.ClickException(f"no place with code {place_code}")
                team = teams.by_code(s, team_code) if team_code else None
                if team_code and team is None:
                    raise click.ClickException(f"no team with code {team_code}")
                try:
                    p = patterns.add_pattern(
                        s, project=proj, place=place, address=address, now=svc.clock.now(), title=title,
                        weekdays=days, every_weeks=every_weeks, start_time=start_time, end_time=end_time,
                        shift_name=shift_name, capacity=capacity, min_staff=min_staff, starts_on=first,
                        ends_on=last, weeks_ahead=weeks_ahead, skip_holidays=not keep_holidays,
                        exceptions=split_list(skip), skills=split_list(skills), team_id=team.id if team else None)
                except patterns.BadPattern as e:
                    raise click.ClickException(str(e)) from None
                made = s.scalars(select(Activity).where(Activity.pattern_id == p.id).order_by(Activity.starts_at))
                click.echo(f"pattern {p.id}: {p.title}")
                for a in made:
                    sh = a.shifts[0]
                    click.echo(f"  shift {sh.id}: {acts.when_label(sh.starts_at, sh.ends_at)} ×{sh.capacity}")
        finally:
            svc.close()

    @pattern.command("list")
    def pattern_list():
        """Every pattern with its weekdays, times and the shifts made so far."""
        from sqlalchemy import func

        from rules import activities as acts
        from store.models import Activity, ShiftPattern

        svc = build_services()
        try:
            with svc.db.session() as s:
                for p in s.scalars(select(ShiftPattern).order_by(ShiftPattern.id)):
                    n = s.scalar(select(func.count()).select_from(Activity).where(Activity.pattern_id == p.id))
                    days = "、".join(f"周{acts.WEEKDAYS[d]}" for d in p.weekdays)
                    every = "每周" if p.every_weeks == 1 else f"每{p.every_weeks}周"
                    state = "" if p.active else "\t(inactive)"
                    click.echo(f"{p.id}\t{p.title}\t{every}{days} {p.start_time}-{p.end_time}\t×{p.capacity}"
                               f"\t{n} shift(s){state}")
        finally:
            svc.close()

    @pattern.command("materialise")
    def pattern_materialise():
        """Make the shifts of the coming weeks of every active pattern (idempotent)."""
        from rules import patterns

        svc = build_services()
        try:
            with svc.db.transaction() as s:
                made = patterns.materialise_all(s, svc.clock.now())
            click.echo(f"made {made} shift(s)")
        finally:
            svc.close()

    @main.command("qr")
    @click.argument("scene_arg", metavar="[SCENE]", required=False)
    @click.option("--scene", help="act:<id>, st:<id> or cm:<community code>.")
    @click.option("--out", "out", type=click.Path(dir_okay=False), help="PNG file to write for printing.")
    @click.option("--local", is_flag=True, help="Render the scene text without asking WeChat.")
    @click.option("--temporary", is_flag=True, help="A 30-day code instead of a permanent one.")
    @click.option("--scale", default=10, show_default=True, type=int, help="Pixels per module.")
    def qr(scene_arg, scene, out, local, temporary, scale):
        """A QR code for an activity, station or community: a PNG for printing with --out,
        else the ticket's image URL."""
        import segno

        scene = scene or scene_arg
        if not scene:
            raise click.UsageError("give the scene: volbot qr --scene act:12 --out act12.png")
        svc = build_services()
        try:
            with svc.db.transaction() as s:
                what = _check_scene(s, scene)
            if local or not api_configured(svc.config):
                if not out:
                    raise click.UsageError("without the WeChat API only a local PNG can be made: add --out FILE")
                content, source = scene, "local (scene text; for the SCAN_CHECKIN menu button)"
            else:
                from pushes.client import WeChatError, client_for

                try:
                    ticket = client_for(svc.config, svc.redis).create_qr_ticket(scene, permanent=not temporary)
                except WeChatError as e:
                    raise click.ClickException(f"WeChat refused the QR ticket: {e}") from None
                if not out:
                    click.echo(f"{scene}: {ticket['image_url']}\n(the code encodes {ticket['url']})")
                    return
                content, source = ticket["url"], "WeChat parametric QR ticket"
            segno.make(content, error="m").save(out, kind="png", scale=scale, border=4)
            click.echo(f"{out}: {scene} ({what}), {source}")
        finally:
            svc.close()
