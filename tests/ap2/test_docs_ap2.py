"""docs/ap2.md: its complete example runs and prints what the page says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "ap2.md"


def test_the_complete_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOC.read_text(encoding="utf-8")
    example = re.findall(r"```python\n(.*?)```", text, re.S)[-1]
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, f"{DOC}:example", "exec"), {"__name__": "__docs_example__"})
    assert printed.getvalue().split() == ["mandate_required", "allowed", "mandate_replayed"]
