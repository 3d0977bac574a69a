"""Personal data at rest (issue 20, part 1): nothing in the database or its dump rebuilds an
ID number or gives a phone, and `volbot pii rotate` re-seals everything under a new key,
online and resumable, with every value read back afterwards under the new key alone."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.cli import main
from rules import pii, volunteering
from store import rotation, sealing
from store.models import Follower, Order, Volunteer
from store.sealing import Keyring
from tests import seeds
from tests.seeds.orders import place_order, resident
from tests.seeds.volunteers import add_volunteer, id_number

PERSON_ID = id_number(born=date(1986, 7, 23), order="418")
PERSON_PHONE = "13687654321"


def database_bytes(svc) -> bytes:
    """Everything the database holds as an attacker with a copy would see it: the SQLite file
    and its WAL, or a PostgreSQL dump (pg_dump, as deploy/README.md's backups are made)."""
    if svc.db.is_sqlite:
        path = Path(svc.config.sqlalchemy_url.split("///", 1)[1])
        return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    url = make_url(os.environ["TEST_DATABASE_URL"])
    env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    return subprocess.run(["pg_dump", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
                           "-U", url.username or "postgres", url.database], env=env, check=True,
                          capture_output=True).stdout


def test_a_person_registered_in_chat_cannot_be_found_in_the_database(wechat_plain, svc):
    seeds.apply(svc, ["vol_teams"])
    say = lambda text: wechat_plain.say("o_private", text)  # noqa: E731 - a one-line helper beside its use
    for text in ("注册", "王小明", PERSON_PHONE, PERSON_ID, "东风社区", "1", "1", "同意"):
        say(text)
    assert "注册成功" in say("确认")
    with svc.db.transaction() as s:
        v = s.scalar(select(Volunteer).where(Volunteer.name == "王小明"))
        assert v.phone == PERSON_PHONE and v.phone_last4 == "4321" and v.id_number_last4 == PERSON_ID[-4:]
        assert v.birth_year == 1986 and pii.decrypt(svc.settings.pii_key, v.id_number_enc) == PERSON_ID
        assert s.scalar(select(Follower.phone).where(Follower.openid == "o_private")) == PERSON_PHONE
    dump = database_bytes(svc)
    assert b"KW" in dump and "王小明".encode() in dump  # the copy is readable: the test can fail
    for secret in (PERSON_ID, PERSON_ID[4:14], PERSON_PHONE, "19860723", "1986-07-23"):
        assert secret.encode() not in dump, secret


def test_rotate_reseals_everything_online_and_resumes_after_a_crash(svc, tmp_path):
    seeds.apply(svc, ["vol_teams"])
    old = svc.keyring
    new_secret = "second-key-for-the-rotation-test"
    with svc.db.transaction() as s:
        people = [add_volunteer(s, f"o_rot_{i}", f"轮换{i}", f"KW2026{i:06d}", "VT-DF", id_number(order=f"{i:03d}"))
                  for i in range(1, 8)]
        for i, v in enumerate(people, 1):
            v.phone = f"1390000{i:04d}"
        people[0].guardian_name, people[0].guardian_phone = "监护人", "13711112222"
        res = resident(s, "o_rot_res", phone="0536-8888000")
        place_order(s, res)
    ids = {f"KW2026{i:06d}": id_number(order=f"{i:03d}") for i in range(1, 8)}

    both = Keyring((*old.versions, ("v2", new_secret)), "v2")
    previous = sealing.use(both)
    try:
        # A crash after the first batch: what was committed stays, the app reads both versions.
        class Crash(Exception):
            pass

        def crash(_column, _n):
            raise Crash()

        with pytest.raises(Crash):
            rotation.rotate(svc.db, both, batch=3, on_batch=crash)
        half = rotation.versions_in_use(svc.db)["volunteers.id_number_enc"]
        assert half == {"v1": 4, "v2": 3}
        with svc.db.transaction() as s:
            for number, idn in ids.items():
                assert volunteering.find_by_id_number(s, both, idn).number == number
            assert sorted(v.phone for v in s.scalars(select(Volunteer))) == [f"1390000{i:04d}" for i in range(1, 8)]
        # The rerun, as an operator would run it, finishes the job.
        env = {"DATABASE_URL": svc.config.database_url or svc.config.sqlalchemy_url, "REDIS_URL": svc.redis_url,
               "VOLBOT_INSTANCE": str(tmp_path), "VOLBOT_ENV": "testing",
               "PII_KEYS": f"v1={old.secret('v1')},v2={new_secret}", "PII_KEY_ID": "v2"}
        out = CliRunner().invoke(main, ["pii", "rotate", "--batch", "2"], env=env)
        assert out.exit_code == 0, out.output
        assert "every value is under the current key" in out.output and "1390000" not in out.output
        for name, counts in rotation.versions_in_use(svc.db).items():
            assert set(counts) <= {"v2"}, (name, counts)

        # The old key retired: everything reads back, and is found by its hashes, under v2 alone.
        only_new = Keyring((("v2", new_secret),), "v2")
        sealing.use(only_new)
        with svc.db.transaction() as s:
            for number, idn in ids.items():
                v = volunteering.find_by_id_number(s, only_new, idn)
                assert v.number == number and pii.decrypt(only_new, v.id_number_enc) == idn
                assert s.scalar(select(Volunteer.number).where(
                    Volunteer.phone_hash.in_(pii.phone_hashes(only_new, v.phone)))) == number
            assert s.scalar(select(Volunteer.guardian_phone).where(Volunteer.number == "KW2026000001")) == "13711112222"
            assert s.scalar(select(Follower.phone).where(Follower.openid == "o_rot_res")) == "0536-8888000"
            order = s.scalar(select(Order))
            assert order.phone == "13800138000" and order.phone_hash in pii.phone_hashes(only_new, "13800138000")
        with pytest.raises(sealing.KeyringError, match="v1"):
            pii.decrypt(only_new, old.encrypt("x", sealing.ID_NUMBER))
        # A second run has nothing left to do.
        assert sum(rotation.rotate(svc.db, only_new).values()) == 0
    finally:
        sealing.use(previous)


def test_the_keys_come_from_the_configuration(tmp_path):
    from bot.config import ConfigError, load_config

    ring = load_config(tmp_path, environ={"PII_KEYS": "v2=bbbbbbbbbbbbbbbbbbbb, v1=aaaaaaaaaaaaaaaaaaaa",
                                          "PII_KEY_ID": "v2"}).keyring()
    assert ring.versions == (("v1", "a" * 20), ("v2", "b" * 20)) and ring.current == "v2"
    assert load_config(tmp_path, environ={"PII_KEY": "only-one"}).keyring() == Keyring.single("only-one")
    with pytest.raises(ConfigError, match="PII_KEY_ID"):
        load_config(tmp_path, environ={"PII_KEYS": "v2=bbbbbbbbbbbbbbbbbbbb"})  # v1 is the default current key
    with pytest.raises(ConfigError, match="PII_KEYS"):
        load_config(tmp_path, environ={"PII_KEYS": "bbbbbbbbbbbbbbbbbbbb"})
    with pytest.raises(ConfigError, match="PII_KEYS"):
        load_config(tmp_path, environ={"VOLBOT_ENV": "production", "SECRET_KEY": "s" * 32, "WECHAT_TOKEN": "t",
                                       "WECHAT_APPID": "wx1", "WECHAT_SECRET": "x" * 16,
                                       "PII_KEYS": "v1=short", "PII_KEY_ID": "v1"})
