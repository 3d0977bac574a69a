"""Personal data: resident ID numbers checked, encrypted at rest, found by a keyed hash and
shown only masked (phones are masked by `rules.masks` / `handlers.common`).

Keys are derived from `PII_KEY` with HKDF, one per purpose, so the encryption key and the
lookup-hash key are independent. Encryption is AES-256-GCM with a random nonce; the stored
text is "v1:" + base64url(nonce + ciphertext). Nothing here logs a value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# ---- resident ID numbers (居民身份证号) -------------------------------------------------

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# First two digits: provinces, plus 71 (Taiwan), 81/82 (Hong Kong/Macau) and 83 (residence
# permits of Taiwan residents). County tables change over time, so only provinces are checked.
REGION_PREFIXES = frozenset(
    [*range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47), *range(50, 55),
     *range(61, 66), 71, 81, 82, 83]
)


class IdNumberError(ValueError):
    """Why an ID number is refused; `code` is one of: format, region, birth_date,
    future, check_digit."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class IdNumber:
    number: str  # normalised: 17 digits + digit or X
    birth_date: date

    @property
    def male(self) -> bool:
        return int(self.number[16]) % 2 == 1

    def age_on(self, day: date) -> int:
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))


def check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS)) % 11]


# Spoken numbers come back from voice recognition as Chinese digits now and then.
_SPOKEN = str.maketrans("零〇幺一二两三四五六七八九", "0011223456789")


def normalize_id_number(text: str) -> str:
    t = unicodedata.normalize("NFKC", text or "").translate(_SPOKEN).upper()
    return re.sub(r"[\s\-]", "", t)


def parse_id_number(text: str, today: date) -> IdNumber:
    """A valid 18-character ID number, or IdNumberError saying what is wrong."""
    n = normalize_id_number(text)
    if not re.fullmatch(r"\d{17}[\dX]", n):
        raise IdNumberError("format")
    if int(n[:2]) not in REGION_PREFIXES:
        raise IdNumberError("region")
    try:
        born = date(int(n[6:10]), int(n[10:12]), int(n[12:14]))
    except ValueError:
        raise IdNumberError("birth_date") from None
    if born.year < 1900:
        raise IdNumberError("birth_date")
    if born > today:
        raise IdNumberError("future")
    if check_digit(n[:17]) != n[17]:
        raise IdNumberError("check_digit")
    return IdNumber(n, born)


def mask_id_number(number: str) -> str:
    """3707**********1234: the first four and the last four characters."""
    n = normalize_id_number(number)
    return n[:4] + "*" * (len(n) - 8) + n[-4:] if len(n) > 8 else "*" * len(n)


def mask_id_tail(tail: str) -> str:
    """The masked form from the stored prefix+suffix ("37071234" → 3707**********1234)."""
    return tail[:4] + "*" * 10 + tail[4:]


# ---- encryption and lookup hash -----------------------------------------------------------

def mask_name(name: str) -> str:
    """张三 → 张*, 张三丰 → 张*丰, 欧阳小明 → 欧**明: enough to recognise, not to identify."""
    name = (name or "").strip()
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def _derive(pii_key: str, purpose: bytes) -> bytes:
    if not pii_key:
        raise ValueError("PII_KEY is empty")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"volbot-pii", info=purpose).derive(
        pii_key.encode("utf-8"))


def encrypt(pii_key: str, plain: str, purpose: bytes = b"id-number") -> str:
    nonce = os.urandom(12)
    ct = AESGCM(_derive(pii_key, b"enc:" + purpose)).encrypt(nonce, plain.encode("utf-8"), purpose)
    return "v1:" + base64.urlsafe_b64encode(nonce + ct).decode("ascii")


def decrypt(pii_key: str, token: str, purpose: bytes = b"id-number") -> str:
    if not token.startswith("v1:"):
        raise ValueError("unknown ciphertext version")
    raw = base64.urlsafe_b64decode(token[3:].encode("ascii"))
    plain = AESGCM(_derive(pii_key, b"enc:" + purpose)).decrypt(raw[:12], raw[12:], purpose)
    return plain.decode("utf-8")


def lookup_hash(pii_key: str, value: str, purpose: bytes = b"id-number") -> str:
    """HMAC-SHA256 (hex) of the normalised value: equal numbers, equal hashes; no key, no
    dictionary attack on the 18-digit space."""
    key = _derive(pii_key, b"hash:" + purpose)
    return hmac.new(key, normalize_id_number(value).encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SealedId:
    enc: str
    hash: str
    tail: str  # first four + last four, for masked display


def seal_id_number(pii_key: str, number: str) -> SealedId:
    n = normalize_id_number(number)
    return SealedId(encrypt(pii_key, n), lookup_hash(pii_key, n), n[:4] + n[-4:])
