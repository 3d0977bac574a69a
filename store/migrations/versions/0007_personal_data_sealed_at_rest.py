"""Personal data sealed at rest: no ID number can be rebuilt from what is stored in clear.

- volunteers.id_number_tail (first four + last four) becomes id_number_last4;
- volunteers.birth_date becomes birth_year (the exact date is in the encrypted number);
- every phone (volunteers.phone and guardian_phone, orders.phone, followers.phone) becomes
  <name>_enc (AES-GCM under the current key, "v1:..."), <name>_hash (keyed HMAC, exact
  lookup) and <name>_last4 (search). places.phone, a station's published desk number, stays.

Encrypting the phones needs the keyring: `volbot db upgrade` passes the configured one
(`Database.upgrade(keyring=...)`). Without it, a database holding phones is refused before
anything changes; an empty one upgrades.

Revision ID: 0007
Revises: 0006
"""
import re
from datetime import date

import sqlalchemy as sa
from alembic import context, op

from store.sealing import ID_NUMBER, PHONE

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# (table, phone column) pairs sealed here.
PHONES = (("volunteers", "phone"), ("volunteers", "guardian_phone"), ("orders", "phone"), ("followers", "phone"))


def _keyring(needed: bool):
    keyring = context.config.attributes.get("pii_keyring")
    if keyring is None and needed:
        raise RuntimeError("migration 0005 encrypts the stored phones and needs the PII keys: run "
                           "`volbot db upgrade` (it reads PII_KEY / PII_KEYS), or pass keyring= to Database.upgrade")
    return keyring


def _any(bind, table: str, column: str) -> bool:
    t = sa.table(table, sa.column(column))
    return bind.execute(sa.select(sa.func.count()).select_from(t).where(t.c[column].is_not(None))).scalar() > 0


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


def upgrade() -> None:
    bind = op.get_bind()
    keyring = _keyring(needed=any(_any(bind, t, c) for t, c in PHONES))
    for table, column in PHONES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(f'{column}_enc', sa.String(length=255), nullable=True))
            batch_op.add_column(sa.Column(f'{column}_hash', sa.String(length=64), nullable=True))
            batch_op.add_column(sa.Column(f'{column}_last4', sa.String(length=4), nullable=True))
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('id_number_last4', sa.String(length=4), nullable=True))
        batch_op.add_column(sa.Column('birth_year', sa.Integer(), nullable=True))

    for table, column in PHONES:
        t = sa.table(table, sa.column('id'), sa.column(column), sa.column(f'{column}_enc'),
                     sa.column(f'{column}_hash'), sa.column(f'{column}_last4'))
        rows = bind.execute(sa.select(t.c.id, t.c[column]).where(t.c[column].is_not(None))).all()
        if rows:
            bind.execute(t.update().where(t.c.id == sa.bindparam('row_id')).values(
                {f'{column}_enc': sa.bindparam('enc'), f'{column}_hash': sa.bindparam('hash'),
                 f'{column}_last4': sa.bindparam('last4')}),
                [{'row_id': row_id, 'enc': keyring.encrypt(phone, PHONE), 'hash': keyring.hash(_digits(phone), PHONE),
                  'last4': _digits(phone)[-4:]} for row_id, phone in rows])
    vol = sa.table('volunteers', sa.column('id'), sa.column('id_number_tail'), sa.column('birth_date', sa.Date),
                   sa.column('id_number_last4'), sa.column('birth_year'))
    rows = bind.execute(sa.select(vol.c.id, vol.c.id_number_tail, vol.c.birth_date)).all()
    if rows:
        bind.execute(vol.update().where(vol.c.id == sa.bindparam('row_id')).values(
            id_number_last4=sa.bindparam('last4'), birth_year=sa.bindparam('year')),
            [{'row_id': row_id, 'last4': tail[-4:], 'year': born.year} for row_id, tail, born in rows])

    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_column('phone')
        batch_op.drop_column('guardian_phone')
        batch_op.drop_column('id_number_tail')
        batch_op.drop_column('birth_date')
        for name, length in (('phone_enc', 255), ('phone_hash', 64), ('phone_last4', 4), ('id_number_last4', 4)):
            batch_op.alter_column(name, existing_type=sa.String(length=length), nullable=False)
        batch_op.alter_column('birth_year', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_volunteers_phone_hash'), ['phone_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_volunteers_phone_last4'), ['phone_last4'], unique=False)
    for table in ('orders', 'followers'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('phone')


def downgrade() -> None:
    """Back to phones, the eight-character tail and the birth date in clear, decrypted with
    the keyring (the ID number gives the tail and the date)."""
    bind = op.get_bind()
    keyring = _keyring(needed=any(_any(bind, t, f"{c}_enc") for t, c in PHONES) or _any(bind, "volunteers", "id"))
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('guardian_phone', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('id_number_tail', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('birth_date', sa.Date(), nullable=True))
    for table in ('orders', 'followers'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('phone', sa.String(length=32), nullable=True))
    for table, column in PHONES:
        t = sa.table(table, sa.column('id'), sa.column(column), sa.column(f'{column}_enc'))
        rows = bind.execute(sa.select(t.c.id, t.c[f'{column}_enc']).where(t.c[f'{column}_enc'].is_not(None))).all()
        if rows:
            bind.execute(t.update().where(t.c.id == sa.bindparam('row_id')).values({column: sa.bindparam('plain')}),
                         [{'row_id': row_id, 'plain': keyring.decrypt(enc, PHONE)} for row_id, enc in rows])
    vol = sa.table('volunteers', sa.column('id'), sa.column('id_number_enc'), sa.column('id_number_tail'),
                   sa.column('birth_date', sa.Date))
    rows = bind.execute(sa.select(vol.c.id, vol.c.id_number_enc)).all()
    if rows:
        values = []
        for row_id, enc in rows:
            n = keyring.decrypt(enc, ID_NUMBER)
            values.append({'row_id': row_id, 'tail': n[:4] + n[-4:],
                           'born': date(int(n[6:10]), int(n[10:12]), int(n[12:14]))})
        bind.execute(vol.update().where(vol.c.id == sa.bindparam('row_id')).values(
            id_number_tail=sa.bindparam('tail'), birth_date=sa.bindparam('born')), values)
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_volunteers_phone_last4'))
        batch_op.drop_index(batch_op.f('ix_volunteers_phone_hash'))
        for name in ('id_number_last4', 'birth_year'):
            batch_op.drop_column(name)
        batch_op.alter_column('phone', existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column('id_number_tail', existing_type=sa.String(length=8), nullable=False)
        batch_op.alter_column('birth_date', existing_type=sa.Date(), nullable=False)
    for table, column in PHONES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for suffix in ('_enc', '_hash', '_last4'):
                batch_op.drop_column(column + suffix)
