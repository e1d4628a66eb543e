"""The one canonical encoding of everything paywarden hashes, fingerprints or chains: audit
entries, intent fingerprints, approval bindings, secret digests, policy versions, request
fingerprints and stored intents all go through `canonical_text` / `canonical_bytes`.

Canonical bytes for hashing, with every serializer option spelled out at the call site.

Sorted keys, compact separators, UTF-8 without ASCII escaping, and NaN refused: a change in a
library default can never silently change an old hash. Floats are refused too, so a value has
exactly one encoding (`10.0` and `10.00` cannot both appear; amounts are integers).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

_SCALARS = (str, int, bool, type(None))
# Far deeper than any audit body; a circular value reaches it too, so the walk always ends.
_DEPTH_MAX = 256


def _reject_floats(value: object) -> None:
    """Only dicts with string keys, lists, str, int, bool and None may be encoded."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict:
            assert isinstance(item, dict)
            for key in item:
                if type(key) is not str:
                    raise TypeError(f"audit keys must be strings, not `{key!r}`")
            children: Iterable[object] = item.values()
        elif kind is list or kind is tuple:
            assert isinstance(item, list | tuple)
            children = item
        elif kind in _SCALARS:
            continue
        else:
            raise TypeError(f"audit values must not be {kind.__name__} (`{item!r}`)")
        if depth >= _DEPTH_MAX:
            raise ValueError(
                f"audit values must not nest deeper than {_DEPTH_MAX} levels (or be circular)"
            )
        for child in children:
            child_kind = type(child)
            if child_kind is str or child_kind is int or child_kind is bool or child is None:
                continue  # the common case, checked without touching the stack
            stack.append((child, depth + 1))


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
