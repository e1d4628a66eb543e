"""How fast `paywarden audit verify` checks a large log, against the bare work it must do.

Run: .venv/bin/python bench/audit_verify.py [--entries 200000] [--rounds 5] [--keep FILE]
                                           [--cores N] [--compare OTHER/src]

Builds a log of `--entries` realistic entries (each the body of a real decision, stored as
paywarden stores it: compressed, hashes as 32 raw bytes) in a fresh store file, then times, in
turns (each round runs every variant once, so machine noise hits all of them alike):

- **the bare loop**: read every row with `sqlite3` (one `SELECT` in storage order, the same
  read-only memory-mapped connection), inflate the body with the dictionary, SHA-256 the
  hashed form and compare it; one core, no link or type checks. The baseline of goal 4.
- **`paywarden audit verify --database FILE`** as a subprocess: the whole process, start-up of
  the interpreter included, as a user runs it (the installed console script).
- **`paywarden audit verify` on one core** (`taskset` to one CPU, where available): the whole
  process when the machine has one core to give it.
- **`verify_file` in process** with 1 worker and with N workers (N = the cores), timed inside
  a process that has already imported it: the verifier alone, no start-up.
- the interpreter's own start-up (`python -c pass`) and `paywarden --version`, for scale.

`--compare OTHER/src` runs the subprocess variants against another source tree as well (an
older commit's `src`, e.g. from `git archive`), taking turns with this one.

Prints each variant's median of rounds: wall-clock seconds, entries per second and the ratio
to the bare loop measured in the same rounds; then CPU seconds (user + system, all processes:
workers included) and the same rates per CPU second, steadier than wall time on a shared
machine and the measure for "on one core". Goal (issue 14): the whole process at least 60 %
of the bare loop on one core, and scaling with cores where there are several.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

PAYWARDEN = str(Path(sys.executable).with_name("paywarden"))
POLICY = """
currency: USD
rules:
  - {id: deny-sanctioned, effect: deny, recipients: ["*.evil.example"]}
  - {id: approve-large, effect: require_approval, actions: ["payments.*"], amount: {gt: 5000}}
  - {id: allow-payments, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: daily, limit: 1000000000, window: day, scope: agent}
  - {id: monthly, limit: 1000000000, window: month}
"""
SELECT = "SELECT seq, created_us, kind, ref_id, parent_hash, entry_hash, body FROM audit_log"


def build_log(database: Path, entries: int) -> int:
    """A store file whose log has `entries` entries, each a real decision's body; the body's
    size in bytes (canonical JSON)."""
    from paywarden import PaymentIntent, Warden
    from paywarden.audit.chain import entry_from_stored, link, stored_row

    with Warden.open(POLICY, database=database) as warden:
        warden.authorize(
            PaymentIntent(
                agent="agent-bench",
                action="payments.transfer",
                amount="12.34",
                currency="USD",
                recipient="vendor.example",
            )
        )
    connection = sqlite3.connect(database, isolation_level=None)
    head = entry_from_stored(connection.execute(f"{SELECT} ORDER BY seq DESC LIMIT 1").fetchone())
    body = head.body
    connection.execute("BEGIN")
    batch = []
    for index in range(entries - head.seq):
        head = link(head, head.created_us + 1, "decision", f"dec_{index:024x}", body)
        batch.append(stored_row(head))
        if len(batch) == 50_000:
            connection.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
            batch.clear()
    connection.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return len(body.encode())


def bare_loop(database: Path) -> int:
    """Read, inflate, hash and compare every row: the least any verifier must do."""
    from paywarden.audit.body_dictionary import DICTIONARY_1

    uri = f"file:{database.resolve()}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, isolation_level=None)
    connection.execute(f"PRAGMA mmap_size = {1 << 30}")
    connection.text_factory = bytes
    domain, header, length = b"paywarden.audit.v1\x00", struct.Struct(">32sQq"), struct.Struct(">I")
    sha256, decompressobj = hashlib.sha256, zlib.decompressobj
    count = 0
    for seq, created_us, kind, ref_id, parent, own, body in connection.execute(SELECT):
        data = decompressobj(-15, zdict=DICTIONARY_1).decompress(body[1:])
        digest = sha256(
            b"".join(
                (
                    domain,
                    header.pack(parent, seq, created_us),
                    length.pack(len(kind)),
                    kind,
                    length.pack(len(ref_id)),
                    ref_id,
                    length.pack(len(data)),
                    data,
                )
            )
        ).digest()
        if digest != own:
            raise SystemExit(f"bare loop: entry {seq} does not hash")
        count += 1
    connection.close()
    return count


IN_PROCESS = """
import resource, sys, time
from paywarden.adapters.storage.sqlite_audit import verify_file
def cpu():
    own, workers = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime
start, start_cpu = time.perf_counter(), cpu()
result = verify_file(sys.argv[1], workers=int(sys.argv[2]))
elapsed, elapsed_cpu = time.perf_counter() - start, cpu() - start_cpu
if not result.ok:
    raise SystemExit(result.describe())
print(elapsed, elapsed_cpu)
"""
# What one run took: wall-clock seconds, and CPU seconds (user + system, every process).
Timing = tuple[float, float]
Timed = Callable[[Path], Timing]


def _environment(tree: Path | None) -> dict[str, str]:
    """The children's environment: `tree` first on the path (another source tree), and
    bytecode caches written (an installed package has them)."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if tree is not None:
        environment["PYTHONPATH"] = str(tree)
    return environment


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], tree: Path | None) -> tuple[subprocess.CompletedProcess[str], Timing]:
    start, start_cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=_environment(tree))
    return done, (time.perf_counter() - start, _children_cpu() - start_cpu)


def in_process(workers: int, tree: Path | None) -> Timed:
    """`verify_file` timed inside a process that has imported it (start-up not counted)."""

    def run(database: Path) -> Timing:
        argv = [sys.executable, "-c", IN_PROCESS, str(database), str(workers)]
        done, _ = _run(argv, tree)
        if done.returncode != 0:
            raise SystemExit(f"verify_file: {done.stdout}{done.stderr}")
        wall, cpu = done.stdout.split()
        return float(wall), float(cpu)

    return run


def whole_process(argv: list[str], tree: Path | None = None) -> Timed:
    """`argv audit verify --database FILE`, start to exit."""

    def run(database: Path) -> Timing:
        done, timing = _run([*argv, "audit", "verify", "--database", str(database), "--json"], tree)
        if done.returncode != 0 or '"ok": true' not in done.stdout:
            raise SystemExit(f"{' '.join(argv)} audit verify: {done.stdout}{done.stderr}")
        return timing

    return run


def command(argv: list[str]) -> Timed:
    def run(database: Path) -> Timing:
        done, timing = _run(argv, None)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: {done.stderr}")
        return timing

    return run


def timed_here(work: Callable[[Path], int]) -> Timed:
    def run(database: Path) -> Timing:
        start, start_cpu = time.perf_counter(), time.process_time()
        work(database)
        return time.perf_counter() - start, time.process_time() - start_cpu

    return run


BARE = "bare loop (read + inflate + sha256), 1 core"


def variants(cores: int, compare: Path | None) -> dict[str, Timed]:
    one_core = ["taskset", "-c", "0"] if shutil.which("taskset") and cores > 1 else []
    trees: list[tuple[str, Path | None]] = [("", None)]
    if compare is not None:
        trees.append((" [compare]", compare))
    found: dict[str, Timed] = {BARE: timed_here(bare_loop)}
    for suffix, tree in trees:
        found[f"audit verify, whole process, {cores} cores{suffix}"] = whole_process(
            [PAYWARDEN], tree
        )
        if one_core:
            found[f"audit verify, whole process, 1 core{suffix}"] = whole_process(
                [*one_core, PAYWARDEN], tree
            )
        found[f"verify_file in process, 1 worker{suffix}"] = in_process(1, tree)
        if cores > 1:
            found[f"verify_file in process, {cores} workers{suffix}"] = in_process(cores, tree)
    found["python -c pass"] = command([sys.executable, "-c", "pass"])
    found["paywarden --version"] = command([PAYWARDEN, "--version"])
    return found


def measure(
    database: Path, rounds: int, cores: int, compare: Path | None
) -> dict[str, list[Timing]]:
    runs = variants(cores, compare)
    timings: dict[str, list[Timing]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up: page cache, bytecode caches
        run(database)
    for number in range(1, rounds + 1):
        print(f"round {number}/{rounds} ...", flush=True)
        for name, run in runs.items():
            timings[name].append(run(database))
    return timings


def report(timings: dict[str, list[Timing]], entries: int) -> None:
    wall = {name: statistics.median(t[0] for t in values) for name, values in timings.items()}
    cpu = {name: statistics.median(t[1] for t in values) for name, values in timings.items()}
    bare_wall, bare_cpu = entries / wall[BARE], entries / cpu[BARE]
    print(
        f"\n{'variant':<52} {'wall s':>7} {'entries/s':>10} {'of bare':>8}"
        f" {'cpu s':>7} {'per cpu s':>10} {'of bare':>8}"
    )
    for name in timings:
        if name.startswith(("python", "paywarden --")):
            print(f"{name:<52} {wall[name]:>7.3f} {'':>10} {'':>8} {cpu[name]:>7.3f}")
            continue
        rate, rate_cpu = entries / wall[name], entries / cpu[name]
        print(
            f"{name:<52} {wall[name]:>7.3f} {rate:>10,.0f} {rate / bare_wall:>7.0%}"
            f" {cpu[name]:>7.3f} {rate_cpu:>10,.0f} {rate_cpu / bare_cpu:>7.0%}"
        )
    print("\nper-round wall seconds:")
    for name, values in timings.items():
        print(f"  {name}: {', '.join(f'{t[0]:.3f}' for t in values)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--keep", type=Path, help="build the log in this file once, reuse it after (as it is)"
    )
    parser.add_argument("--compare", type=Path, help="another source tree (its src) alongside")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        database = options.keep or Path(directory) / "audit.db"
        if not database.exists():
            start = time.perf_counter()
            body_bytes = build_log(database, options.entries)
            print(
                f"built {options.entries:,} entries ({body_bytes} B bodies) in "
                f"{time.perf_counter() - start:.1f} s",
                flush=True,
            )
        timings = measure(database, options.rounds, options.cores, options.compare)
        size_mb = database.stat().st_size / 1e6
        entries = bare_loop(database)  # a kept file may hold another number of entries
    print(
        f"\n{entries:,} entries, {options.rounds} rounds, {options.cores} cores "
        f"(os.cpu_count {os.cpu_count()}), file {size_mb:.0f} MB; Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}"
    )
    report(timings, entries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
