"""The policy's `redaction:` settings: more secret key names and secret value patterns.

```yaml
redaction:
  key_names: [employee_number, tax_id]        # more secret key names
  value_patterns: ['\\bEMP-[0-9]{6}\\b']        # more secret values (Python regular expressions)
```

Both add to the built-in rules of `paywarden.audit.redact` (docs/redaction.md); nothing can
turn a built-in rule off. Every problem is a compile error at the offending entry.
"""

from __future__ import annotations

import unicodedata

from paywarden.audit.redact import (
    DEFAULT_REDACTOR,
    ENTRIES_MAX,
    Redactor,
    name_words,
    pattern_problem,
)
from paywarden.policy.document import LocList, LocMap, Mark
from paywarden.policy.report import CompileReport

KEY_NAME_CHARS_MAX = 64
_KEYS = frozenset({"key_names", "value_patterns"})


def compile_redaction_settings(value: object, report: CompileReport, mark: Mark) -> Redactor:
    """The policy's redactor: the default one plus the section's names and patterns."""
    if value is None:
        return DEFAULT_REDACTOR
    if not isinstance(value, LocMap) or not value or set(value) - _KEYS:
        report.error("`redaction` must be a mapping with `key_names` and/or `value_patterns`", mark)
        return DEFAULT_REDACTOR
    errors_before = len(report.errors)
    names = _entries(value, "key_names", report)
    for name, item_mark in names:
        problem = _key_name_problem(name)
        if problem is not None:
            report.error(f"`redaction.key_names`: `{name}` {problem}", item_mark)
    patterns = _entries(value, "value_patterns", report)
    for pattern, item_mark in patterns:
        problem = pattern_problem(pattern)
        if problem is not None:
            report.error(f"`redaction.value_patterns`: `{pattern}` {problem}", item_mark)
        elif any(unicodedata.category(char) == "Cc" for char in pattern):
            report.warning(
                f"`redaction.value_patterns`: `{pattern!r}` contains a control character; in "
                "YAML double quotes `\\b` is a backspace, so write patterns in single quotes",
                item_mark,
            )
    if len(report.errors) > errors_before:
        return DEFAULT_REDACTOR
    return Redactor(
        tuple(dict.fromkeys(name for name, _ in names)),
        tuple(dict.fromkeys(pattern for pattern, _ in patterns)),
    )


def _entries(section: LocMap, key: str, report: CompileReport) -> list[tuple[str, Mark]]:
    """The strings of `section[key]` (one string or a list of them), each with its mark."""
    if key not in section:
        return []
    raw, mark = section[key], section.mark_of(key)
    if isinstance(raw, str):
        raw_items: list[object] = [raw]
        marks = [mark]
    elif isinstance(raw, LocList):
        raw_items = list(raw)
        marks = [raw.mark_of(index) for index in range(len(raw))]
    else:
        report.error(f"`redaction.{key}` must be a list of strings", mark)
        return []
    if not raw_items or len(raw_items) > ENTRIES_MAX:
        report.error(f"`redaction.{key}` needs 1 to {ENTRIES_MAX} entries", mark)
        return []
    entries: list[tuple[str, Mark]] = []
    for item, item_mark in zip(raw_items, marks, strict=True):
        if isinstance(item, str) and item:
            entries.append((item, item_mark))
        else:
            report.error(f"`redaction.{key}` entries must be non-empty strings", item_mark)
    return entries


def _key_name_problem(name: str) -> str | None:
    if len(name) > KEY_NAME_CHARS_MAX:
        return f"is longer than {KEY_NAME_CHARS_MAX} characters"
    if not name_words(name):
        return "has no letters or digits to match"
    return None
