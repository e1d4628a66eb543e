"""How deeply JSON text nests, read without parsing it: a parser's recursion limit (which any
library may raise) must not decide whether hostile `[[[[...` is refused."""

from __future__ import annotations

OPENERS = frozenset("[{")
CLOSERS = frozenset("]}")


def nests_deeper_than(text: str | bytes, depth_max: int) -> bool:
    """Whether arrays and objects in `text` nest more than `depth_max` levels deep (brackets
    inside strings do not count). Stops reading at the first level past the limit."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in OPENERS:
            depth += 1
            if depth > depth_max:
                return True
        elif char in CLOSERS:
            depth -= 1
    return False
