"""Resident ID numbers (居民身份证号码, GB 11643-1999): validation, masking and the HMAC
that events carry instead of the number itself."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

_CHECK = "10X98765432"

# Full-width digits and Latin letters (０-９, Ａ-Ｚ, ａ-ｚ: what a Chinese input method
# types) and the ideographic space. One rule for ID numbers and codes everywhere: they
# are folded to ASCII, and any other non-ASCII digit is refused by the checks after.
_FULLWIDTH = {
    **{0xFF10 + i: ord("0") + i for i in range(10)},
    **{0xFF21 + i: ord("A") + i for i in range(26)},
    **{0xFF41 + i: ord("a") + i for i in range(26)},
    0x3000: ord(" "),
}


def fold_fullwidth(text: str) -> str:
    """`text` with full-width digits and letters made ASCII (for ID numbers and codes,
    never for free text, whose full-width punctuation is Chinese writing)."""
    return text if text.isascii() else text.translate(_FULLWIDTH)


class InvalidIdNumber(ValueError):
    pass


@dataclass(frozen=True)
class IdNumber:
    value: str
    area_code: str
    birth_date: date
    sex: str  # "male" / "female" from the sequence number's parity


@lru_cache(maxsize=65536)
def _birth_date(text: str) -> date | None:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def check_digit(first17: str) -> str:
    # The GB 11643 weights are 2^k mod 11 and 13 = 2 (mod 11): the weighted sum is
    # 2 * int(first17, 13) modulo 11.
    return _CHECK[2 * int(first17, 13) % 11]


def parse_id_number(raw: str, *, today: date | None = None) -> IdNumber:
    """Validate format, birth date and GB 11643 check digit. The area code is checked
    only for shape here: whether it exists is the register's business (see registry)."""
    value = fold_fullwidth(raw).strip().upper()
    if (
        len(value) != 18
        or not value.isascii()
        or not value[:17].isdigit()
        or not (value[17].isdigit() or value[17] == "X")
    ):
        raise InvalidIdNumber("must be 18 characters: 17 digits and a digit or X")
    born = _birth_date(value[6:14])
    if born is None:
        raise InvalidIdNumber(f"birth date {value[6:14]} is not a real date")
    if born.year < 1900 or born > (today or date.today()):
        raise InvalidIdNumber(f"birth date {born.isoformat()} is out of range")
    if check_digit(value[:17]) != value[17]:
        raise InvalidIdNumber("check digit does not match (GB 11643)")
    return IdNumber(
        value=value,
        area_code=value[:6],
        birth_date=born,
        sex="male" if int(value[16]) % 2 else "female",
    )


def mask_id(value: str) -> str:
    """441881********123X: area code and last four stay, birth date and sequence go."""
    return f"{value[:6]}********{value[14:]}" if len(value) == 18 else "*" * len(value)


_PHONE_NOISE = re.compile(r"[\s\-()（）]")


def normalize_phone(phone: str) -> str:
    """A phone number as one string of digits: full-width digits folded, spaces, hyphens
    and brackets dropped, and a +86 / 0086 country prefix removed. The one rule by which
    the register checks, notify addresses and assistance recognises a phone."""
    digits = _PHONE_NOISE.sub("", fold_fullwidth(phone))
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            return digits[len(prefix) :]
    return digits


def valid_phone(phone: str) -> bool:
    """A mainland mobile number (11 digits, 1[3-9]…) or a landline with area code (0…)."""
    digits = normalize_phone(phone)
    if not digits.isascii() or not digits.isdigit():
        return False
    if len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789":
        return True
    return digits.startswith("0") and 10 <= len(digits) <= 12


def mask_phone(phone: str) -> str:
    """138****5678: what a response without the pii scope, an event or a log shows of a
    phone number."""
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 8 else "****"


def id_hash(value: str, key: str) -> str:
    """HMAC-SHA256 of the normalized ID number under BACKSTOP_PII_KEY, hex encoded."""
    return hmac.new(key.encode(), value.strip().upper().encode(), hashlib.sha256).hexdigest()


# Imports and feeds check hundreds of thousands of numbers: the fast path below applies
# parse_id_number's rules without building an IdNumber; a number it refuses goes through
# parse_id_number for the reason. Tests check that both agree.


def quick_check(raw: str, today: date) -> tuple[str, date] | None:
    """(normalized number, birth date) if parse_id_number would accept `raw`, else None."""
    value = fold_fullwidth(raw).strip().upper()
    first17 = value[:17]
    if (
        len(value) == 18
        and first17.isascii()
        and first17.isdigit()
        and check_digit(first17) == value[17]
    ):
        born = _birth_date(value[6:14])
        if born is not None and born.year >= 1900 and born <= today:
            return value, born
    return None


class IdHasher:
    """id_hash under one key, without keying HMAC anew for every number: the SHA-256
    states after HMAC's inner and outer key blocks (RFC 2104) are computed once."""

    def __init__(self, key: str) -> None:
        block = key.encode()
        if len(block) > 64:  # SHA-256's block size
            block = hashlib.sha256(block).digest()
        block = block.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def __call__(self, normalized: str) -> str:
        inner = self._inner.copy()
        inner.update(normalized.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


@lru_cache(maxsize=8)
def id_hasher(key: str) -> IdHasher:
    return IdHasher(key)
