"""Scrub secrets before hashing, and record which paths were redacted.

The chain must never contain an API key, a card number, a signature or a token, yet it must
still show that a field was removed. Keys whose names look secret are replaced wholesale; any
string that contains a card number (13-19 digits passing the Luhn check) or a known secret key
prefix is replaced too. The redacted paths are returned so the entry can list them.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(api[_-]?key|secret|password|passwd|token|signature|authorization|auth|cookie|"
    r"card[_-]?number|\bpan\b|cvv|cvc|private[_-]?key|pepper|credential)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]{8,}|\bpw_[A-Za-z0-9_]{16,}|"
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\beyJ[A-Za-z0-9_-]{10,}\."
)
# A run of digit groups separated by single spaces or dashes ("4242 4242 4242 4242 123").
_DIGIT_GROUPS = re.compile(r"\d+(?:[ -]\d+)*")
_GROUP_SEPARATOR = re.compile(r"[ -]")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _contains_card_number(text: str) -> bool:
    """True when consecutive digit groups of a run form 13-19 digits passing the Luhn check.

    Every window of whole groups is tried, so a card number followed or preceded by another
    group (an expiry, a CVC: "4242 4242 4242 4242 123") is still found.
    """
    for match in _DIGIT_GROUPS.finditer(text):
        groups = _GROUP_SEPARATOR.split(match.group(0))
        for start in range(len(groups)):
            digits = ""
            for group in groups[start:]:
                digits += group
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and _luhn_ok(digits):
                    return True
    return False


def _secret_text(text: str) -> bool:
    return bool(_SECRET_VALUE.search(text)) or _contains_card_number(text)


def redact(value: object, path: str = "$") -> tuple[object, list[str]]:
    """A copy of `value` with secrets replaced, and the sorted list of redacted paths."""
    redacted: list[str] = []
    result = _walk(value, path, redacted)
    return result, sorted(redacted)


def _walk(value: object, path: str, redacted: list[str]) -> object:
    if isinstance(value, dict):
        clean: dict[str, object] = {}
        for key, item in value.items():
            item_path = f"{path}.{key}"
            if _SECRET_KEY.search(str(key)) and item is not None:
                clean[key] = REDACTED
                redacted.append(item_path)
            else:
                clean[key] = _walk(item, item_path, redacted)
        return clean
    if isinstance(value, list | tuple):
        return [_walk(item, f"{path}[{index}]", redacted) for index, item in enumerate(value)]
    if isinstance(value, str) and _secret_text(value):
        redacted.append(path)
        return REDACTED
    return value
