"""Dispatch set-ups: a small district with volunteers at known distances from 樱园社区.

Codes start with DC- (communities) and DT- (teams) so they cannot clash with other seeds.

    DT-KW  奎文区志愿服务大队 (brigade)            coordinator o_dc_top
      DT-GW  广文街道分队 (detachment)            coordinator o_dc_gw
        DT-YY  樱园社区小队  → 樱园社区 (36.7080, 119.1330)
        DT-JD  金都社区小队  → 金都社区 (≈0.9 km from 樱园)
      DT-BY  北苑街道分队 (detachment)
        DT-XY  新苑社区小队  → 新苑社区 (≈2.4 km)
        DT-BH  北海社区小队  → 北海社区 (≈5.8 km)

Volunteers who repair (category 08), and how they rank for a 樱园 repair in an afternoon
with nothing else going on (see README "Dispatch"):

    o_dv_li    李师傅 KW2026100001 樱园, no availability given  40 + 5 + 10 = 55
    o_dv_wang  王师傅 KW2026100002 金都, afternoons              20 + 20 + 10 = 50
    o_dv_zhao  赵师傅 KW2026100003 新苑, afternoons              10 + 20 + 10 = 40
    —          孙师傅 KW2026100005 北海, afternoons, not in chat  0 + 20 + 10 = 30 (never offered)
    o_dv_qian  钱医生 KW2026100004 樱园, medical (05) only: not a candidate

o_dres is a resident of 樱园 (phone remembered).
"""

from __future__ import annotations

from datetime import date

from rules import teams
from store.models import Community, Coordinator, Follower, Volunteer
from tests.seeds import seed
from tests.seeds.volunteers import PII_KEY, id_number

COMMUNITIES = [
    ("DC-YY", "樱园社区", "广文街道", 36.7080, 119.1330),
    ("DC-JD", "金都社区", "广文街道", 36.7120, 119.1430),
    ("DC-XY", "新苑社区", "北苑街道", 36.7300, 119.1330),
    ("DC-BH", "北海社区", "北苑街道", 36.7600, 119.1400),
]
TREE = {"teams": [
    {"code": "DT-KW", "name": "奎文区志愿服务大队", "kind": "brigade", "children": [
        {"code": "DT-GW", "name": "广文街道分队", "kind": "detachment", "street": "广文街道", "children": [
            {"code": "DT-YY", "name": "樱园社区小队", "kind": "squad", "community": "DC-YY", "street": "广文街道"},
            {"code": "DT-JD", "name": "金都社区小队", "kind": "squad", "community": "DC-JD", "street": "广文街道"},
        ]},
        {"code": "DT-BY", "name": "北苑街道分队", "kind": "detachment", "street": "北苑街道", "children": [
            {"code": "DT-XY", "name": "新苑社区小队", "kind": "squad", "community": "DC-XY", "street": "北苑街道"},
            {"code": "DT-BH", "name": "北海社区小队", "kind": "squad", "community": "DC-BH", "street": "北苑街道"},
        ]},
    ]},
]}
PM = ["weekday_pm", "weekend_pm"]
VOLUNTEERS = [  # openid, name, number, team, skills, availability
    ("o_dv_li", "李师傅", "KW2026100001", "DT-YY", ["08"], []),
    ("o_dv_wang", "王师傅", "KW2026100002", "DT-JD", ["08", "03"], PM),
    ("o_dv_zhao", "赵师傅", "KW2026100003", "DT-XY", ["08"], PM),
    ("o_dv_qian", "钱医生", "KW2026100004", "DT-YY", ["05"], PM),
    (None, "孙师傅", "KW2026100005", "DT-BH", ["08"], PM),
]


def _follower(session, openid: str, phone: str | None = None) -> Follower:
    f = Follower(openid=openid, subscribed=True, phone=phone)
    session.add(f)
    session.flush()
    return f


@seed
def dispatch_world(session):
    from rules import pii

    for code, name, street, lat, lng in COMMUNITIES:
        session.add(Community(code=code, name=name, street=street, lat=lat, lng=lng))
    session.flush()
    teams.import_rows(session, teams.rows_from_yaml(TREE))
    for i, (openid, name, number, team_code, skills, availability) in enumerate(VOLUNTEERS):
        f = _follower(session, openid) if openid else None
        idn = id_number(born=date(1975, 3, 1), order=f"{i + 500}")
        sealed = pii.seal_id_number(PII_KEY, idn)
        session.add(Volunteer(
            number=number, follower_id=f.id if f else None, name=name, phone="13900000000",
            id_number_enc=sealed.enc, id_number_hash=sealed.hash, id_number_last4=sealed.last4,
            birth_year=1975, team_id=teams.by_code(session, team_code).id, state="active",
            skills=skills, availability=availability))
    for openid, name, code in (("o_dc_gw", "周协调", "DT-GW"), ("o_dc_top", "吴大队", "DT-KW")):
        f = _follower(session, openid)
        session.add(Coordinator(team_id=teams.by_code(session, code).id, name=name, role="detachment",
                                follower_id=f.id))
    _follower(session, "o_dres", phone="13812345678")
    session.flush()
