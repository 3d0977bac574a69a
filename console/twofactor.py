"""The coordinators' second factor: TOTP codes (RFC 6238 with pyotp; any authenticator app
reads the secret from a QR code) and one-use recovery codes for a lost phone.

- The secret is made at enrolment, kept in the enrolling session (Redis) until a first code
  proves the phone has it, then stored sealed (`store.sealing.SealedText`, under the PII
  keyring and re-sealed by `volbot pii rotate`; without the keys the database gives no
  secret away).
- A code is accepted for the current 30-second step or the one before or after (clocks
  drift), and never twice: the step of the last accepted code is kept
  (`coordinators.totp_last_step`), so a code seen over a shoulder is spent.
- Ten recovery codes are issued with the factor (and again on request, replacing the old
  ones); only their SHA-256 is kept, each works once.
- Which roles must use it: VOLBOT_2FA_REQUIRED_ROLES (the district brigade by default).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import secrets
from datetime import datetime

import pyotp
import segno
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from store.models import Coordinator, CoordinatorRecoveryCode

ISSUER = "爱满奎文志愿服务"
RECOVERY_CODES = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or typed from paper
_CODE = re.compile(r"^\d{6}$")


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_png(uri: str) -> bytes:
    """The enrolment QR code as a PNG (segno: no image library needed)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="png", scale=6, border=2)
    return out.getvalue()


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def enabled(coordinator: Coordinator) -> bool:
    return coordinator.totp_enabled_at is not None and bool(coordinator.totp_secret)


def required(roles: frozenset[str], coordinator: Coordinator) -> bool:
    return coordinator.role in roles


def _matching_step(secret: str, code: str, at: float) -> int | None:
    """The time step (within one of `at`'s) whose code is `code`."""
    code = code.strip().replace(" ", "")
    if not _CODE.match(code):
        return None
    totp = pyotp.TOTP(secret)
    step = int(at // totp.interval)
    for candidate in (step, step - 1, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def check_enrolment(secret: str, code: str, at: float) -> bool:
    """Does the phone have the secret being enrolled (a first code from it)?"""
    return _matching_step(secret, code, at) is not None


def enable(session: Session, coordinator: Coordinator, secret: str, code: str, now: datetime,
           at: float) -> list[str] | None:
    """Turn the factor on with its first code; the recovery codes to show once, or None
    for a wrong code."""
    step = _matching_step(secret, code, at)
    if step is None:
        return None
    coordinator.totp_secret = secret  # sealed by the column type
    coordinator.totp_enabled_at = now
    coordinator.totp_last_step = step
    return issue_recovery_codes(session, coordinator, now)


def verify(session: Session, coordinator: Coordinator, code: str, at: float) -> bool:
    """A code from the enrolled phone, not used before. Spends its time step atomically
    (two requests racing with one code: one wins)."""
    if not enabled(coordinator):
        return False
    step = _matching_step(coordinator.totp_secret, code, at)
    if step is None:
        return False
    spent = session.execute(
        update(Coordinator).where(Coordinator.id == coordinator.id,
                                  (Coordinator.totp_last_step.is_(None)) | (Coordinator.totp_last_step < step))
        .values(totp_last_step=step).execution_options(synchronize_session=False))
    if spent.rowcount != 1:
        return False
    coordinator.totp_last_step = step
    return True


def _hash(code: str) -> str:
    return hashlib.sha256(normalise(code).encode()).hexdigest()


def normalise(code: str) -> str:
    return re.sub(r"[\s-]", "", code).lower()


def looks_like_recovery_code(code: str) -> bool:
    return len(normalise(code)) == 10


def issue_recovery_codes(session: Session, coordinator: Coordinator, now: datetime) -> list[str]:
    """New recovery codes, replacing any earlier ones; the plain codes, shown once."""
    session.execute(delete(CoordinatorRecoveryCode).where(CoordinatorRecoveryCode.coordinator_id == coordinator.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(CoordinatorRecoveryCode(coordinator_id=coordinator.id, code_hash=_hash(raw), created_at=now))
    session.flush()
    return codes


def use_recovery_code(session: Session, coordinator: Coordinator, code: str, now: datetime) -> bool:
    """Spend one unused recovery code of the account (atomically: once, whatever races)."""
    if not looks_like_recovery_code(code):
        return False
    used = session.execute(
        update(CoordinatorRecoveryCode)
        .where(CoordinatorRecoveryCode.coordinator_id == coordinator.id,
               CoordinatorRecoveryCode.code_hash == _hash(code), CoordinatorRecoveryCode.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False))
    return used.rowcount == 1


def recovery_codes_left(session: Session, coordinator: Coordinator) -> int:
    return len(list(session.scalars(select(CoordinatorRecoveryCode.id).where(
        CoordinatorRecoveryCode.coordinator_id == coordinator.id, CoordinatorRecoveryCode.used_at.is_(None)))))


def disable(session: Session, coordinator: Coordinator) -> None:
    """Turn the factor off (the account's owner with a code, or an operator's reset)."""
    coordinator.totp_secret = None
    coordinator.totp_enabled_at = None
    coordinator.totp_last_step = None
    session.execute(delete(CoordinatorRecoveryCode).where(CoordinatorRecoveryCode.coordinator_id == coordinator.id))
