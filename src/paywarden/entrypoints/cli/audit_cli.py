"""`paywarden audit ...`: keys, checkpoints, verification, proof traces and export.

Every command here opens the database read-only: verifying or reading the log never writes it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from paywarden.adapters.storage.postgres_audit import (
    audit_entries,
    database_missing,
    read_setting,
    verify_database,
)
from paywarden.audit.chain import AuditEntry, Checkpoint, VerifyResult, verify
from paywarden.errors import StoreError

# `verify` without a checkpoint runs over the largest logs: it loads the verifier and little
# else. Signing (`cryptography`), proof traces and policies (the policy compiler) load in the
# commands that use them.

EXIT_BROKEN = 1
EXIT_USAGE = 2
_DATABASE = click.option(
    "--database",
    default="paywarden.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite ledger file, or a PostgreSQL URL (postgresql://...).",
)


def _die(message: str, status: int = EXIT_USAGE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _entries(database: str, ref_id: str | None = None) -> Iterator[AuditEntry]:
    if database_missing(database):
        _die(f"no ledger at `{database}`")
    return audit_entries(database, ref_id=ref_id)


@click.group()
def audit() -> None:
    """Tamper-evident audit log: keygen, checkpoint, verify, show, export."""


@audit.command()
@click.option(
    "--out",
    "private_path",
    default="paywarden-audit.key",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Private key file (PEM, mode 0600).",
)
@click.option(
    "--public-out",
    "public_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Public key file (default: the private key path with .pub).",
)
def keygen(private_path: str, public_path: str | None) -> None:
    """Create the Ed25519 key that signs checkpoints. Keep it outside the database."""
    from paywarden.audit.checkpoint import CheckpointError, generate_key

    public = Path(public_path) if public_path else Path(private_path).with_suffix(".pub")
    try:
        key_id = generate_key(Path(private_path), public)
    except CheckpointError as error:
        _die(str(error))
    click.echo(f"created {private_path} (private, keep it secret) and {public} (public)")
    click.echo(f"key id {key_id}")


@audit.command()
@_DATABASE
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Private signing key from `paywarden audit keygen`.",
)
@click.option(
    "--dir",
    "directory",
    default=None,
    type=click.Path(file_okay=False),
    help="Also write the checkpoint into this directory.",
)
@click.option(
    "--origin", default="paywarden", show_default=True, help="Log name in the checkpoint."
)
def checkpoint(database: str, key_path: str, directory: str | None, origin: str) -> None:
    """Sign the current head of the log and print the checkpoint (JSON) to stdout."""
    from paywarden.audit.checkpoint import CheckpointError, load_private_key, sign, write_checkpoint
    from paywarden.clock import SystemClock, to_us

    try:
        head: AuditEntry | None = None
        for head in _entries(database):  # noqa: B007 - the loop finds the last entry
            pass
        seq, head_hash = (head.seq, head.entry_hash) if head else (0, "00" * 32)
        signed = sign(
            Checkpoint(origin, seq, head_hash, to_us(SystemClock().now())),
            load_private_key(Path(key_path)),
        )
    except (CheckpointError, StoreError) as error:
        _die(str(error))
    if directory:
        write_checkpoint(Path(directory), signed)
    click.echo(signed.to_json(), nl=False)


def _trusted_checkpoint(
    checkpoint_file: str | None, checkpoint_dir: str | None, public_key: str | None
) -> Checkpoint | None:
    if not checkpoint_file and not checkpoint_dir:
        return None  # nothing to trust: the signing library stays unloaded
    from paywarden.audit.checkpoint import (
        CheckpointError,
        check_signature,
        latest_checkpoint,
        load_public_key,
        parse,
    )

    path = Path(checkpoint_file) if checkpoint_file else None
    if path is None and checkpoint_dir:
        path = latest_checkpoint(Path(checkpoint_dir))
        if path is None:
            _die(f"no checkpoint in `{checkpoint_dir}`")
    if path is None:
        return None
    if public_key is None:
        _die("--public-key is required to trust a checkpoint")
    assert public_key is not None  # _die exits; this narrows the type
    try:
        key = load_public_key(Path(public_key))
    except CheckpointError as error:
        _die(str(error))  # a key that cannot be read is a usage error, not a broken log
    try:
        return check_signature(parse(path.read_text(encoding="utf-8")), key)
    except OSError as error:
        _die(f"cannot read checkpoint `{path}`: {error}")
    except CheckpointError as error:
        _die(f"{path}: {error}", EXIT_BROKEN)
    return None


def _export_entries(path: str) -> Iterator[AuditEntry]:
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    data = json.loads(line)
                    yield AuditEntry(
                        int(data["seq"]),
                        int(data["created_us"]),
                        str(data["kind"]),
                        str(data["ref_id"]),
                        str(data["parent_hash"]),
                        str(data["entry_hash"]),
                        str(data["body"]),
                    )
                except (ValueError, KeyError, TypeError) as error:
                    _die(f"{path}:{number}: malformed export line: {error}", EXIT_BROKEN)
    except OSError as error:
        _die(f"cannot read `{path}`: {error}")


@audit.command("verify")
@_DATABASE
@click.option(
    "--export",
    "export_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Verify a JSONL export offline instead of a database.",
)
@click.option(
    "--checkpoint",
    "checkpoint_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Signed checkpoint to check the log against.",
)
@click.option(
    "--checkpoint-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Use the latest checkpoint in this directory.",
)
@click.option(
    "--public-key",
    default=None,
    type=click.Path(dir_okay=False),
    help="Trusted public key for the checkpoint.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_command(
    database: str,
    export_file: str | None,
    checkpoint_file: str | None,
    checkpoint_dir: str | None,
    public_key: str | None,
    as_json: bool,
) -> None:
    """Recompute the chain; report the first broken link. Exit 0 valid, 1 broken, 2 usage.

    Without a checkpoint, a deleted tail or a rewritten suffix cannot be detected; with one,
    both are. Verification never writes to the log.
    """
    trusted = _trusted_checkpoint(checkpoint_file, checkpoint_dir, public_key)
    try:
        if export_file:
            result = verify(_export_entries(export_file), trusted)
        else:
            if database_missing(database):
                _die(f"no ledger at `{database}`")
            result = verify_database(database, trusted)
    except StoreError as error:
        _die(str(error))
    _print_result(result, trusted, as_json)
    sys.exit(0 if result.ok else EXIT_BROKEN)


def _print_result(result: VerifyResult, trusted: Checkpoint | None, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "entries_checked": result.entries_checked,
                    "head_seq": result.head_seq,
                    "head_hash": result.head_hash,
                    "first_bad_seq": result.first_bad_seq,
                    "reason": result.reason,
                    "checkpoint_seq": trusted.seq if trusted else None,
                },
                indent=2,
            )
        )
        return
    click.echo(result.describe())
    if result.ok and trusted is None:
        click.echo("note: no checkpoint given, so tail truncation cannot be ruled out")
    elif result.ok and trusted is not None:
        click.echo(f"checkpoint at seq {trusted.seq} matches")


@audit.command()
@click.argument("ref_id")
@_DATABASE
def show(ref_id: str, database: str) -> None:
    """Print the audit entries of a decision or hold id, with the decision's proof trace.

    Each entry is printed as recorded. A decision's entry lists the rules that matched or
    failed; every other rule of its policy follows, expanded from the policy's text."""
    found = list(_entries(database, ref_id))
    if not found:
        _die(f"no audit entry for `{ref_id}`", EXIT_BROKEN)
    for entry in found:
        click.echo(f"seq {entry.seq}  {entry.kind}  hash {entry.entry_hash[:16]}")
        try:
            body = json.loads(entry.body)
        except ValueError:
            click.echo(
                f"(the body is not valid JSON, so this entry is broken: {ascii(entry.body)})"
            )
            continue
        click.echo(json.dumps(body, indent=2, sort_keys=True))
        _show_expanded_trace(database, body)


def _show_expanded_trace(database: str, body: object) -> None:
    """After a decision entry whose trace leaves rules out: the whole trace, every rule of the
    policy version it cites (from the text the ledger keeps for that version)."""
    from paywarden.audit import proof
    from paywarden.policy.loading import POLICY_TEXT_KEY

    decision = body.get("decision") if isinstance(body, dict) else None
    if not isinstance(decision, dict):
        return
    trace, version = decision.get("trace"), proof.cited_version(decision)
    if not isinstance(trace, dict) or "rules_not_listed" not in trace or version is None:
        return
    try:
        text = read_setting(database, POLICY_TEXT_KEY + version)
    except StoreError as error:
        _die(str(error))
    expanded = proof.expand_decision(decision, proof.policy_rules(version, text))
    if "rules_not_listed" in expanded["trace"]:
        click.echo(
            f"({trace['rules_not_listed']} rules not listed: the ledger has no text of policy "
            f"{version} that names them)"
        )
        return
    click.echo(f"trace with every rule of policy {version}:")
    click.echo(json.dumps(expanded["trace"], indent=2, sort_keys=True))


@audit.command()
@_DATABASE
@click.option(
    "--out",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="JSONL output file, or - for stdout.",
)
def export(database: str, out: str) -> None:
    """Write the log as JSONL; `paywarden audit verify --export FILE` checks it offline."""
    handle = sys.stdout if out == "-" else open(out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for entry in _entries(database):
            handle.write(
                json.dumps(
                    {
                        "seq": entry.seq,
                        "created_us": entry.created_us,
                        "kind": entry.kind,
                        "ref_id": entry.ref_id,
                        "parent_hash": entry.parent_hash,
                        "entry_hash": entry.entry_hash,
                        "body": entry.body,
                    },
                    # ASCII escapes keep a hand-edited, non-UTF-8 body exportable; offline
                    # verification then reports it as the broken entry it is.
                    ensure_ascii=True,
                    sort_keys=True,
                )
                + "\n"
            )
    finally:
        if handle is not sys.stdout:
            handle.close()
