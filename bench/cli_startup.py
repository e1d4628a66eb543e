"""Whole-process start-up of the `paywarden` command: what a user waits for at the prompt.

Run: .venv/bin/python bench/cli_startup.py [--runs 20] [--pythonpath DIR]

Each command runs `--runs` times, each time in a fresh interpreter (`subprocess`), timed from
start to exit with `time.perf_counter`; the commands take turns, so a noisy moment on the machine
hits all of them alike. One untimed run of each comes first and writes the bytecode caches (an
installed package has them: pip compiles at install), so `PYTHONDONTWRITEBYTECODE` is dropped
from the children's environment. Prints the median, p90 and minimum in seconds, and the target
where there is one (issue 13: `--version` ≤ 0.25 s, `check` ≤ 0.5 s on the 2-core machine).
`--pythonpath DIR` puts another source tree first (e.g. an older commit's `src`) to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FINTECH = REPO / "src" / "paywarden" / "examples" / "fintech_policy.yaml"
CHECK_ARGS = (
    *("--agent", "a", "--action", "payments.transfer"),
    *("--amount", "10", "--currency", "USD", "--recipient", "vendor.example.com"),
)
# The same decision with one CEL `when:` rule: the `cel` package loads only for such policies.
CEL_POLICY = """\
currency: USD
rules:
  - {id: big, effect: deny, when: 'amount_minor > 100000'}
  - {id: transfers, effect: allow, actions: [payments.transfer], amount: {lte: 500}}
"""


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    argv: tuple[str, ...]
    target_seconds: float | None = None


def cases(python: str, paywarden: str, cel_policy: Path) -> list[Case]:
    check = (paywarden, "check", "--policy")
    return [
        Case("python -c pass (the interpreter alone)", (python, "-c", "pass")),
        Case('python -c "import paywarden"', (python, "-c", "import paywarden")),
        Case("paywarden --version", (paywarden, "--version"), 0.25),
        Case("paywarden check (fintech policy, no CEL)", (*check, str(FINTECH), *CHECK_ARGS), 0.5),
        Case("paywarden check (a policy with CEL when:)", (*check, str(cel_policy), *CHECK_ARGS)),
        Case(
            "paywarden policy validate (fintech)", (paywarden, "policy", "validate", str(FINTECH))
        ),
    ]


def run_once(case: Case, env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(case.argv, env=env, cwd=REPO, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{case.label} failed ({result.returncode}): {result.stderr.decode()}")
    return elapsed


def summary(case: Case, samples: list[float]) -> str:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    p90 = statistics.quantiles(ordered, n=10, method="inclusive")[8]
    target = "" if case.target_seconds is None else f"≤ {case.target_seconds:.2f}"
    verdict = ""
    if case.target_seconds is not None:
        verdict = "met" if median <= case.target_seconds else "NOT met"
    line = f"{case.label:<44} {median:>7.3f} {p90:>7.3f} {ordered[0]:>7.3f}  {target:<7} {verdict}"
    return line.rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command")
    parser.add_argument("--pythonpath", default=None, help="a source tree to import first")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    python = sys.executable
    paywarden = str(Path(python).parent / "paywarden")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.pythonpath, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as directory:
        cel_policy = Path(directory) / "cel_policy.yaml"
        cel_policy.write_text(CEL_POLICY, encoding="utf-8")
        measure(cases(python, paywarden, cel_policy), env, args.runs)


def measure(todo: list[Case], env: dict[str, str], runs: int) -> None:
    for case in todo:
        run_once(case, env)  # warm-up: bytecode caches, the page cache
    samples: dict[str, list[float]] = {case.label: [] for case in todo}
    for _ in range(runs):
        for case in todo:
            samples[case.label].append(run_once(case, env))
    print(f"{runs} runs each, fresh interpreter per run, {os.cpu_count()} CPUs, seconds")
    print(f"{'command':<44} {'median':>7} {'p90':>7} {'min':>7}  target")
    for case in todo:
        print(summary(case, samples[case.label]))


if __name__ == "__main__":
    main()
