"""Run paywarden's benchmarks: `.venv/bin/python bench/run.py [policy] [options]`.

With no name every benchmark runs; options after the name go to that benchmark
(`bench/run.py policy --iterations 50000 --runs 1`). `make bench` runs them all.
`bench/run.py profile` prints where paywarden's per-decision time goes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import policy_eval
import profile_policy

BENCHES: dict[str, Callable[[Sequence[str] | None], int]] = {
    "policy": policy_eval.main,
}
# Diagnostics: run by name only, not by `make bench`.
TOOLS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "profile": profile_policy.main,
}


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\nbenchmarks: {', '.join(BENCHES)}; diagnostics: {', '.join(TOOLS)}")
        return 0
    if argv and not argv[0].startswith("-"):
        name, rest = argv[0], list(argv[1:])
        known = {**BENCHES, **TOOLS}
        if name not in known:
            print(f"unknown benchmark `{name}`; choose from: {', '.join(known)}")
            return 2
        return known[name](rest)
    status = 0
    for bench in BENCHES.values():
        status |= bench(list(argv))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
