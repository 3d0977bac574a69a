"""Personal data: resident ID numbers checked, encrypted at rest, found by a keyed hash and
shown only masked (phones are masked by `rules.masks` / `handlers.common`).

The keys are a versioned keyring (`store.sealing`: AES-256-GCM, the stored text "v2:..."
names its key; HKDF derives each version's encryption and lookup-hash keys apart). The
database keeps an ID number's ciphertext, its keyed hash and its last four characters, and
the birth year; nothing from which the number could be rebuilt. Nothing here logs a value.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from store.sealing import ID_NUMBER, PHONE, Keyring, phone_digits, process_keyring

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
    """The masked form from a prefix+suffix kept only in a form's answer ("37071234" →
    3707**********1234): the person's own summary in chat."""
    return tail[:4] + "*" * 10 + tail[4:]


def mask_id_last4(last4: str) -> str:
    """The masked form from what the database keeps (the last four): **************1234."""
    return "*" * 14 + (last4 or "")[-4:]


# ---- encryption and lookup hash (store.sealing's keyring) ---------------------------------

Keys = Keyring | str  # a keyring, or one secret (key v1: what PII_KEY alone configures)


def keyring(keys: Keys) -> Keyring:
    if not keys:
        raise ValueError("PII_KEY is empty")
    return Keyring.of(keys)


def encrypt(keys: Keys, plain: str, purpose: str = ID_NUMBER) -> str:
    return keyring(keys).encrypt(plain, purpose)


def decrypt(keys: Keys, token: str, purpose: str = ID_NUMBER) -> str:
    return keyring(keys).decrypt(token, purpose)


def lookup_hash(keys: Keys, value: str) -> str:
    """HMAC-SHA256 (hex) of the normalised ID number under the current key's hash key: equal
    numbers, equal hashes; no key, no dictionary attack on the 18-digit space."""
    return keyring(keys).hash(normalize_id_number(value), ID_NUMBER)


def lookup_hashes(keys: Keys, value: str) -> list[str]:
    """The number's hash under every key held (a rotation may be half done)."""
    return keyring(keys).hashes(normalize_id_number(value), ID_NUMBER)


def phone_hashes(keys: Keys, phone: str) -> list[str]:
    return keyring(keys).hashes(phone_digits(phone), PHONE)


def birth_date_of(id_number_enc: str, keys: Keys | None = None) -> date:
    """The birth date in a sealed ID number (for an age rule: the database keeps only the
    year); under the process keyring unless `keys` are given."""
    number = decrypt(keys or process_keyring(), id_number_enc)
    return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


@dataclass(frozen=True)
class SealedId:
    enc: str
    hash: str
    last4: str  # for masked display: all the database keeps in clear


def seal_id_number(keys: Keys, number: str) -> SealedId:
    n = normalize_id_number(number)
    return SealedId(encrypt(keys, n), lookup_hash(keys, n), n[-4:])
