"""Certificates carry a verification code and may be revoked (the public verify page).

Certificates issued before this get a code too, so every certificate can be checked.

Revision ID: 0010
Revises: 0009
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # rules.certificates.CODE_ALPHABET, as of this revision


def upgrade() -> None:
    with op.batch_alter_table('service_certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verify_code', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('revoked_reason', sa.String(length=200), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_service_certificates_verify_code'), ['verify_code'])
    conn = op.get_bind()
    table = sa.table('service_certificates', sa.column('id', sa.Integer), sa.column('verify_code', sa.String))
    for (cert_id,) in conn.execute(sa.select(table.c.id).where(table.c.verify_code.is_(None))).all():
        code = "".join(secrets.choice(ALPHABET) for _ in range(12))
        conn.execute(table.update().where(table.c.id == cert_id).values(verify_code=code))


def downgrade() -> None:
    with op.batch_alter_table('service_certificates', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_service_certificates_verify_code'), type_='unique')
        batch_op.drop_column('revoked_reason')
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('verify_code')
