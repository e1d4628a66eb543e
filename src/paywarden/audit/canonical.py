"""Canonical bytes for hashing, with every serializer option spelled out at the call site.

Sorted keys, compact separators, UTF-8 without ASCII escaping, and NaN refused: a change in a
library default can never silently change an old hash. Floats are refused too, so a value has
exactly one encoding (`10.0` and `10.00` cannot both appear; amounts are integers).
"""

from __future__ import annotations

import json

_SCALARS = (str, int, bool, type(None))
# Far deeper than any audit body; a circular value reaches it too, so the walk always ends.
_DEPTH_MAX = 256


def _reject_floats(value: object) -> None:
    """Only dicts with string keys, lists, str, int, bool and None may be encoded."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list or kind is tuple:
            if depth >= _DEPTH_MAX:
                raise ValueError(
                    f"audit values must not nest deeper than {_DEPTH_MAX} levels (or be circular)"
                )
            if kind is dict:
                assert isinstance(item, dict)
                for key in item:
                    if type(key) is not str:
                        raise TypeError(f"audit keys must be strings, not `{key!r}`")
                stack.extend((child, depth + 1) for child in item.values())
            else:
                assert isinstance(item, list | tuple)
                stack.extend((child, depth + 1) for child in item)
        elif kind not in _SCALARS:
            raise TypeError(f"audit values must not be {kind.__name__} (`{item!r}`)")


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
