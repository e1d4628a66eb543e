"""Canonical bytes for hashing, with every serializer option spelled out at the call site.

Sorted keys, compact separators, UTF-8 without ASCII escaping, and NaN refused: a change in a
library default can never silently change an old hash. Floats are refused too, so a value has
exactly one encoding (`10.0` and `10.00` cannot both appear; amounts are integers).
"""

from __future__ import annotations

import json


def _reject_floats(value: object, path: str = "$") -> None:
    if isinstance(value, float):
        raise TypeError(f"audit values must not be floats (at `{path}`)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"audit keys must be strings (at `{path}`)")
            _reject_floats(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _reject_floats(item, f"{path}[{index}]")


def canonical_text(value: object) -> str:
    """The one text encoding of a JSON value made of dicts, lists, str, int, bool and None."""
    _reject_floats(value)
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        indent=None,
        skipkeys=False,
        check_circular=True,
    )


def canonical_bytes(value: object) -> bytes:
    return canonical_text(value).encode("utf-8", errors="strict")
