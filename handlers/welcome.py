"""Following and leaving the account; the main menu and help as commands.

Subscribing creates or revives the follower (a QR scene binds them to a community or
station). Unsubscribing erases their personal data, as WeChat's rules require: every
journey registers an eraser for what it holds; records the law requires to keep (volunteer
hours) stay under the volunteer number, unlinked from the openid. The replies cached in
Redis for WeChat's retries go too (bot.pipeline, after the turn).
"""

from __future__ import annotations

from sqlalchemy import delete, select, update

from dialogue import types as t
from handlers import registry
from store.models import Community, Coordinator, CoordinatorMessage, Follower, Volunteer


@registry.on_event(t.SUBSCRIBE)
def subscribe(ctx, message):
    follower = ctx.follower
    follower.subscribed = True
    follower.subscribed_at = ctx.now
    follower.unsubscribed_at = None
    follower.push_blocked = None
    if message.key:
        bind_scene(ctx, follower, message.key)
    ctx.state.clear()
    menu = ctx.engine.main_menu_reply(ctx, intro=ctx.engine.menu.welcome)
    return menu


def bind_scene(ctx, follower: Follower, scene: str) -> None:
    """Remember the QR scene a follower came through; a community scene binds them."""
    follower.scene = scene[:64]
    if scene.startswith("cm:"):
        community = ctx.session.scalar(select(Community).where(Community.code == scene[3:]))
        if community is not None:
            follower.community_id = community.id


@registry.on_event(t.SCAN)
def scan(ctx, message):
    # A scene handler (check-in, station binding) answers; a bare community code binds.
    if message.key.startswith("cm:"):
        bind_scene(ctx, ctx.follower, message.key)
        return "已为您关联到该社区。回复“菜单”查看服务。"
    return None


@registry.on_event(t.UNSUBSCRIBE)
def unsubscribe(ctx, message):
    follower = ctx.follower
    for erase in registry.erasers:
        erase(ctx, follower)
    # Volunteer and coordinator records stay (hours are a legal record) under their own
    # number, no longer tied to this openid.
    for model in (Volunteer, Coordinator):
        ctx.session.execute(update(model).where(model.follower_id == follower.id).values(follower_id=None))
    # What they wrote to staff when stuck in a form is theirs too.
    ctx.session.execute(delete(CoordinatorMessage).where(CoordinatorMessage.follower_id == follower.id))
    follower.subscribed = False
    follower.unsubscribed_at = ctx.now
    follower.phone = None
    follower.last_lat = follower.last_lng = None
    follower.last_location_at = None
    follower.community_id = None
    follower.scene = None
    ctx.state.clear()
    return None  # WeChat shows nothing to someone who left


@registry.on_event(t.LOCATION_REPORT)
def location_report(ctx, message):
    """Auto-reported position: remembered for "near me", never answered."""
    if message.location:
        follower = ctx.follower
        follower.last_lat = message.location.lat
        follower.last_lng = message.location.lng
        follower.last_location_at = ctx.now
    return None


@registry.command("MENU")
def menu(ctx, message):
    return ctx.engine.main_menu_reply(ctx)
