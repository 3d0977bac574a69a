"""Personal data sealed at rest: a keyring of versioned keys, AES-256-GCM encryption whose
stored text names the key it was made with, and keyed lookup hashes (HMAC-SHA256).

A key version is an id ("v1", "v2", ...) and a secret. From each secret HKDF derives one
key per use and purpose ("enc:phone", "hash:id-number", ...), so the encryption key and the
lookup-hash key of a version are independent: neither reveals the other. The stored text is
"<version>:" + base64url(nonce + ciphertext); any version the keyring still holds can be
read, new values are written under `Keyring.current`. A lookup hash is written under the
same version as the ciphertext beside it (one row, one version), and lookups try every
version the keyring holds, so a rotation half done (`volbot pii rotate`) finds every row.

`SealedText` is the column type of the phones: Python sees the number, SQL holds only its
ciphertext. Its keyring is the process's (`use`, called when `bot.services` starts): a
column type is given no session to carry one. Nothing here logs a value.

Own code rather than a library (sqlalchemy-utils' EncryptedType): that type has one key and
no version in the stored text, so it cannot rotate online.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

VERSION_RE = re.compile(r"v[1-9]\d{0,3}")
TOKEN_RE = re.compile(r"(v[1-9]\d{0,3}):(.+)", re.S)
ID_NUMBER = "id-number"
PHONE = "phone"
TOTP_SECRET = "totp-secret"  # a coordinator's second factor (console/twofactor.py)


class KeyringError(ValueError):
    """A keyring that cannot work (no keys, a bad version id, an unknown current key)."""


@lru_cache(maxsize=256)
def _derive(secret: str, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"volbot-pii", info=info.encode("ascii")).derive(
        secret.encode("utf-8"))


@lru_cache(maxsize=256)
def _aead(secret: str, purpose: str) -> AESGCM:
    return AESGCM(_derive(secret, "enc:" + purpose))


def version_number(version: str) -> int:
    return int(version[1:])


@dataclass(frozen=True)
class Keyring:
    """The keys a process may read with, and the one it writes with."""

    versions: tuple[tuple[str, str], ...]  # (version id, secret), oldest first
    current: str

    def __post_init__(self):
        if not self.versions:
            raise KeyringError("no PII key")
        for version, secret in self.versions:
            if not VERSION_RE.fullmatch(version):
                raise KeyringError(f"key id {version!r} is not v1, v2, ...")
            if not secret:
                raise KeyringError(f"key {version} is empty")
        if len({v for v, _ in self.versions}) != len(self.versions):
            raise KeyringError("a key id is listed twice")
        if self.current not in dict(self.versions):
            raise KeyringError(f"the current key {self.current!r} is not among the keys")

    @classmethod
    def single(cls, secret: str) -> "Keyring":
        """One key, version v1 (what `PII_KEY` alone configures)."""
        return cls((("v1", secret),), "v1")

    @classmethod
    def of(cls, keys: "Keyring | str") -> "Keyring":
        return keys if isinstance(keys, Keyring) else cls.single(keys)

    def secret(self, version: str) -> str:
        try:
            return dict(self.versions)[version]
        except KeyError:
            raise KeyringError(f"key {version} is not configured (retired too early?)") from None

    def encrypt(self, plain: str, purpose: str) -> str:
        nonce = os.urandom(12)
        ct = _aead(self.secret(self.current), purpose).encrypt(nonce, plain.encode("utf-8"), purpose.encode())
        return f"{self.current}:" + base64.urlsafe_b64encode(nonce + ct).decode("ascii")

    def decrypt(self, token: str, purpose: str) -> str:
        m = TOKEN_RE.fullmatch(token or "")
        if not m:
            raise ValueError("unknown ciphertext version")
        raw = base64.urlsafe_b64decode(m.group(2).encode("ascii"))
        return _aead(self.secret(m.group(1)), purpose).decrypt(raw[:12], raw[12:], purpose.encode()).decode("utf-8")

    def hash(self, normalised: str, purpose: str, version: str | None = None) -> str:
        """HMAC-SHA256 (hex) of an already normalised value under one version's hash key."""
        key = _derive(self.secret(version or self.current), "hash:" + purpose)
        return hmac.new(key, normalised.encode("utf-8"), hashlib.sha256).hexdigest()

    def hashes(self, normalised: str, purpose: str) -> list[str]:
        """The value's hash under every version held, the current first (for `IN` lookups)."""
        order = [self.current] + [v for v, _ in reversed(self.versions) if v != self.current]
        return [self.hash(normalised, purpose, v) for v in order]


def token_version(token: str) -> str | None:
    m = TOKEN_RE.fullmatch(token or "")
    return m.group(1) if m else None


# ---- phones -------------------------------------------------------------------------------

def phone_digits(phone: str) -> str:
    """What a phone's hash and last four are taken from: its digits ("0536-8888000" → 05368888000)."""
    return re.sub(r"\D", "", phone or "")


def phone_last4(phone: str) -> str:
    return phone_digits(phone)[-4:]


# ---- the process's keyring and the column type --------------------------------------------

_process_keyring: Keyring | None = None


def use(keyring: Keyring | None) -> Keyring | None:
    """Make `keyring` the one `SealedText` columns read and write with (one per process);
    returns the one it replaces."""
    global _process_keyring
    previous, _process_keyring = _process_keyring, keyring
    return previous


def process_keyring() -> Keyring:
    if _process_keyring is None:
        raise KeyringError("no PII keyring configured in this process (bot.services sets it)")
    return _process_keyring


class SealedText(TypeDecorator):
    """A text column stored encrypted under the process keyring. Compare it only through
    its lookup hash column: every encryption of one value differs (random nonce)."""

    impl = String(255)
    cache_ok = True

    def __init__(self, purpose: str):
        super().__init__()
        self.purpose = purpose

    def process_bind_param(self, value, dialect):
        return None if value is None else process_keyring().encrypt(str(value), self.purpose)

    def process_result_value(self, value, dialect):
        return None if value is None else process_keyring().decrypt(value, self.purpose)


def keep_phone_lookups(attribute) -> None:
    """When a sealed phone attribute (e.g. `Volunteer.phone`) is set, set its companions
    `<name>_hash` (exact lookup) and `<name>_last4` (search by the last four digits) too."""
    from sqlalchemy import event

    name = attribute.key

    def on_set(target, value, _old, _initiator):
        digits = phone_digits(value) if value is not None else None
        setattr(target, f"{name}_hash", process_keyring().hash(digits, PHONE) if digits is not None else None)
        setattr(target, f"{name}_last4", digits[-4:] if digits is not None else None)

    event.listen(attribute, "set", on_set)
