"""Versioned schema migrations for the SQLite store.

STRICT tables and CHECK constraints are the second line of defence behind the code: an amount
can never be zero, negative or a REAL, a counter can never go negative, and a state can only be
one of the known ones. Tables keyed by text ids are WITHOUT ROWID, so each insert writes one
b-tree instead of a table and its primary-key index: fewer pages per commit, and commits are
what durable decisions wait on. There is deliberately no `spent <= limit` constraint: an
operator must be able to lower a limit below current spend to freeze spending; the reserve
statement enforces it.

The audit log's bodies and hashes are stored compact since version 8 (see the comment there):
what a row holds is decoded by `paywarden.audit.chain.entry_from_stored`.
"""

from __future__ import annotations

import sqlite3
from typing import Final

MIGRATIONS: Final[tuple[tuple[int, str], ...]] = (
    (
        1,
        """
        CREATE TABLE decisions (
            decision_id     TEXT PRIMARY KEY,
            created_us      INTEGER NOT NULL,
            agent           TEXT NOT NULL,
            action          TEXT NOT NULL,
            amount_minor    INTEGER NOT NULL CHECK (typeof(amount_minor) = 'integer'
                                                    AND amount_minor > 0),
            currency        TEXT NOT NULL,
            recipient       TEXT NOT NULL,
            outcome         TEXT NOT NULL CHECK (outcome IN ('allow', 'deny', 'require_approval')),
            reason_code     TEXT NOT NULL,
            idempotency_key TEXT,
            fingerprint     TEXT NOT NULL,
            hold_id         TEXT,
            policy_version  TEXT NOT NULL,
            audit_seq       INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        CREATE UNIQUE INDEX decisions_idempotency
            ON decisions (agent, idempotency_key) WHERE idempotency_key IS NOT NULL;

        CREATE TABLE holds (
            hold_id        TEXT PRIMARY KEY,
            decision_id    TEXT NOT NULL,
            agent          TEXT NOT NULL,
            amount_minor   INTEGER NOT NULL CHECK (typeof(amount_minor) = 'integer'
                                                   AND amount_minor > 0),
            currency       TEXT NOT NULL,
            state          TEXT NOT NULL CHECK (state IN ('held', 'captured', 'voided', 'expired')),
            created_us     INTEGER NOT NULL,
            expires_us     INTEGER NOT NULL CHECK (expires_us > created_us),
            resolved_us    INTEGER,
            captured_minor INTEGER CHECK (captured_minor IS NULL OR
                                          (captured_minor > 0 AND captured_minor <= amount_minor))
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX holds_due ON holds (expires_us) WHERE state = 'held';

        CREATE TABLE budget_counters (
            budget_id       TEXT NOT NULL,
            scope_key       TEXT NOT NULL,
            window_start_us INTEGER NOT NULL,
            currency        TEXT NOT NULL,
            spent_minor     INTEGER NOT NULL DEFAULT 0
                            CHECK (typeof(spent_minor) = 'integer' AND spent_minor >= 0),
            held_minor      INTEGER NOT NULL DEFAULT 0
                            CHECK (typeof(held_minor) = 'integer' AND held_minor >= 0),
            PRIMARY KEY (budget_id, scope_key, window_start_us)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE hold_charges (
            hold_id         TEXT NOT NULL,
            budget_id       TEXT NOT NULL,
            scope_key       TEXT NOT NULL,
            window_start_us INTEGER NOT NULL,
            amount_minor    INTEGER NOT NULL CHECK (typeof(amount_minor) = 'integer'
                                                    AND amount_minor > 0),
            created_us      INTEGER NOT NULL,
            state           TEXT NOT NULL
                            CHECK (state IN ('held', 'captured', 'voided', 'expired')),
            PRIMARY KEY (hold_id, budget_id)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX hold_charges_rolling
            ON hold_charges (budget_id, scope_key, created_us) WHERE window_start_us = -1;

        CREATE TABLE velocity_events (
            velocity_id TEXT NOT NULL,
            scope_key   TEXT NOT NULL,
            created_us  INTEGER NOT NULL,
            hold_id     TEXT
        ) STRICT;
        CREATE INDEX velocity_events_window ON velocity_events (velocity_id, scope_key, created_us);
        """,
    ),
    (
        2,
        """
        CREATE TABLE audit_log (
            seq         INTEGER PRIMARY KEY CHECK (seq > 0),
            created_us  INTEGER NOT NULL,
            kind        TEXT NOT NULL,
            ref_id      TEXT NOT NULL,
            parent_hash TEXT NOT NULL CHECK (length(parent_hash) = 64),
            entry_hash  TEXT NOT NULL CHECK (length(entry_hash) = 64),
            body        TEXT NOT NULL
        ) STRICT;
        CREATE INDEX audit_log_ref ON audit_log (ref_id);
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT, WITHOUT ROWID;
        -- Append-only as a second line of defence (the chain and checkpoints are the first):
        -- the application never updates or deletes an entry.
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """,
    ),
    (
        3,
        """
        CREATE TABLE operators (
            operator_id TEXT PRIMARY KEY,
            name        TEXT NOT NULL,
            created_us  INTEGER NOT NULL,
            disabled_us INTEGER
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE approvals (
            approval_id TEXT PRIMARY KEY,
            decision_id TEXT NOT NULL,
            hold_id     TEXT NOT NULL,
            agent       TEXT NOT NULL,
            binding     TEXT NOT NULL,
            intent      TEXT NOT NULL,
            status      TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected',
                                                        'expired', 'consumed', 'voided')),
            required    INTEGER NOT NULL CHECK (required IN (1, 2)),
            rule_ids    TEXT NOT NULL,
            created_us  INTEGER NOT NULL,
            expires_us  INTEGER NOT NULL CHECK (expires_us > created_us),
            decided_us  INTEGER,
            note        TEXT
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX approvals_open ON approvals (agent, binding)
            WHERE status IN ('pending', 'approved');
        CREATE INDEX approvals_hold ON approvals (hold_id);

        CREATE TABLE approval_votes (
            approval_id TEXT NOT NULL,
            operator_id TEXT NOT NULL,
            vote        TEXT NOT NULL CHECK (vote IN ('approve', 'reject')),
            reason      TEXT NOT NULL,
            created_us  INTEGER NOT NULL,
            PRIMARY KEY (approval_id, operator_id)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE grants (
            grant_id       TEXT PRIMARY KEY,
            agent          TEXT NOT NULL,
            action         TEXT NOT NULL,
            currency       TEXT NOT NULL,
            per_payment_minor INTEGER NOT NULL CHECK (per_payment_minor > 0),
            total_minor    INTEGER NOT NULL CHECK (total_minor > 0),
            used_minor     INTEGER NOT NULL DEFAULT 0 CHECK (used_minor >= 0),
            uses_max       INTEGER CHECK (uses_max IS NULL OR uses_max > 0),
            uses           INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
            recipients     TEXT NOT NULL,
            created_by     TEXT NOT NULL,
            created_us     INTEGER NOT NULL,
            expires_us     INTEGER NOT NULL CHECK (expires_us > created_us),
            revoked_us     INTEGER,
            CHECK (used_minor <= total_minor)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE halts (
            scope      TEXT PRIMARY KEY,
            reason     TEXT NOT NULL,
            actor      TEXT NOT NULL,
            created_us INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE outbox (
            event_id        INTEGER PRIMARY KEY,
            kind            TEXT NOT NULL,
            body            TEXT NOT NULL,
            created_us      INTEGER NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_us INTEGER NOT NULL,
            delivered_us    INTEGER,
            last_error      TEXT
        ) STRICT;
        CREATE INDEX outbox_due ON outbox (next_attempt_us) WHERE delivered_us IS NULL;
        """,
    ),
    (
        4,
        """
        CREATE TABLE payments (
            payment_id      TEXT PRIMARY KEY,
            decision_id     TEXT NOT NULL UNIQUE,
            hold_id         TEXT NOT NULL,
            agent           TEXT NOT NULL,
            rail            TEXT NOT NULL,
            rail_key        TEXT NOT NULL UNIQUE,
            intent          TEXT NOT NULL,
            amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
            currency        TEXT NOT NULL,
            state           TEXT NOT NULL CHECK (state IN ('authorized', 'submitted', 'settled',
                                                          'failed', 'unknown', 'refunded')),
            rail_payment_id TEXT,
            refunded_minor  INTEGER NOT NULL DEFAULT 0
                            CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
            error           TEXT,
            created_us      INTEGER NOT NULL,
            updated_us      INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX payments_open ON payments (state)
            WHERE state IN ('authorized', 'submitted', 'unknown');

        CREATE TABLE breakers (
            rail                 TEXT PRIMARY KEY,
            state                TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
            consecutive_failures INTEGER NOT NULL CHECK (consecutive_failures >= 0),
            opened_us            INTEGER
        ) STRICT, WITHOUT ROWID;
        """,
    ),
    (
        5,
        """
        CREATE TABLE sessions (
            agent      TEXT NOT NULL,
            session_id TEXT NOT NULL,
            phase      TEXT NOT NULL CHECK (phase IN ('EXPLORE', 'DECIDE', 'COMMIT', 'CLOSED')),
            created_us INTEGER NOT NULL,
            updated_us INTEGER NOT NULL,
            PRIMARY KEY (agent, session_id)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE refunds (
            refund_id     TEXT PRIMARY KEY,
            payment_id    TEXT NOT NULL,
            amount_minor  INTEGER NOT NULL CHECK (amount_minor > 0),
            currency      TEXT NOT NULL,
            state         TEXT NOT NULL CHECK (state IN ('submitted', 'settled', 'failed',
                                                        'unknown')),
            rail_key      TEXT NOT NULL UNIQUE,
            rail_refund_id TEXT,
            reason        TEXT NOT NULL,
            actor         TEXT NOT NULL,
            error         TEXT,
            created_us    INTEGER NOT NULL,
            updated_us    INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX refunds_by_payment ON refunds (payment_id);

        CREATE TABLE disputes (
            dispute_id  TEXT PRIMARY KEY,
            payment_id  TEXT NOT NULL,
            status      TEXT NOT NULL CHECK (status IN ('open', 'under_review', 'refunded',
                                                         'rejected', 'withdrawn')),
            reason      TEXT NOT NULL,
            evidence    TEXT NOT NULL,
            opened_by   TEXT NOT NULL,
            resolution  TEXT,
            refund_id   TEXT,
            created_us  INTEGER NOT NULL,
            updated_us  INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX disputes_by_payment ON disputes (payment_id);

        CREATE TABLE scopes (
            scope_id   TEXT PRIMARY KEY,
            agent      TEXT NOT NULL,
            status     TEXT NOT NULL CHECK (status IN ('open', 'committed', 'compensated',
                                                        'compensation_failed')),
            created_us INTEGER NOT NULL,
            updated_us INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE scope_steps (
            scope_id   TEXT NOT NULL,
            step       INTEGER NOT NULL CHECK (step >= 0),
            payment_id TEXT,
            label      TEXT NOT NULL,
            state      TEXT NOT NULL CHECK (state IN ('registered', 'compensated', 'failed')),
            error      TEXT,
            updated_us INTEGER NOT NULL,
            PRIMARY KEY (scope_id, step)
        ) STRICT, WITHOUT ROWID;

        ALTER TABLE hold_charges ADD COLUMN restored_minor INTEGER NOT NULL DEFAULT 0
            CHECK (typeof(restored_minor) = 'integer' AND restored_minor >= 0);
        """,
    ),
    (
        6,
        """
        CREATE TABLE api_keys (
            key_id      TEXT PRIMARY KEY,
            prefix      TEXT NOT NULL,
            digest      TEXT NOT NULL,
            role        TEXT NOT NULL CHECK (role IN ('agent', 'operator', 'admin')),
            agent       TEXT,
            operator    TEXT,
            environment TEXT,
            created_by  TEXT NOT NULL,
            created_us  INTEGER NOT NULL,
            revoked_us  INTEGER,
            CHECK ((role = 'agent') = (agent IS NOT NULL)),
            CHECK ((role = 'operator') = (operator IS NOT NULL))
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE idempotency_keys (
            scope       TEXT NOT NULL,
            key         TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            state       TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
            status      INTEGER,
            body        TEXT,
            created_us  INTEGER NOT NULL,
            updated_us  INTEGER NOT NULL,
            PRIMARY KEY (scope, key)
        ) STRICT, WITHOUT ROWID;
        """,
    ),
    # One agent's waiting requests, counted and summed in one indexed query inside the write
    # transaction that would add another (the per-agent caps of the policy's `approvals:`).
    (
        7,
        """
        CREATE INDEX approvals_pending_agent ON approvals (agent, expires_us, hold_id)
            WHERE status = 'pending';
        """,
    ),
    # Compact storage (issue 14, goal 5). New audit entries keep their hashes as 32 raw bytes
    # and their bodies compressed (`paywarden.audit.body_codec`); what the chain hashes is
    # unchanged, so every entry written before verifies as it did. Entries already stored are
    # copied byte for byte, in their legacy form: each hash as its 64 hex digits, the body as
    # its canonical JSON text (format `{`). Pure SQL, so the copy is one pass at disk speed
    # (SQLite 3.40 has no `unhex`; decoding 1M hashes in SQL took over a minute). A decision's
    # index row keeps only what lookups need (its id and audit entry); an idempotency key is
    # a row of its own, with the intent fingerprint a replay is checked against.
    (
        8,
        """
        CREATE TABLE audit_log_compact (
            seq         INTEGER PRIMARY KEY CHECK (seq > 0),
            created_us  INTEGER NOT NULL,
            kind        TEXT NOT NULL,
            ref_id      TEXT NOT NULL,
            parent_hash BLOB NOT NULL CHECK (length(parent_hash) IN (32, 64)),
            entry_hash  BLOB NOT NULL CHECK (length(entry_hash) IN (32, 64)),
            body        BLOB NOT NULL CHECK (length(body) > 0)
        ) STRICT;
        INSERT INTO audit_log_compact
            SELECT seq, created_us, kind, ref_id, CAST(parent_hash AS BLOB),
                   CAST(entry_hash AS BLOB), CAST(body AS BLOB)
            FROM audit_log ORDER BY seq;
        DROP TABLE audit_log;
        ALTER TABLE audit_log_compact RENAME TO audit_log;
        CREATE INDEX audit_log_ref ON audit_log (ref_id);
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

        CREATE TABLE decisions_compact (
            decision_id TEXT PRIMARY KEY,
            audit_seq   INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        INSERT INTO decisions_compact SELECT decision_id, audit_seq FROM decisions;
        CREATE TABLE decision_keys (
            agent           TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            decision_id     TEXT NOT NULL,
            fingerprint     TEXT NOT NULL,
            PRIMARY KEY (agent, idempotency_key)
        ) STRICT, WITHOUT ROWID;
        INSERT INTO decision_keys
            SELECT agent, idempotency_key, decision_id, fingerprint FROM decisions
            WHERE idempotency_key IS NOT NULL;
        DROP TABLE decisions;
        ALTER TABLE decisions_compact RENAME TO decisions;
        """,
    ),
    # Analytics and anomaly facts (issue 17): one slim row per decision, written with the
    # decision's audit entry and index row (`decisions.insert`), so it is never out of step.
    # Decisions recorded before this version have no fact row (their audit entries keep them).
    # `recipient` is the payee's canonical text; `hold_id` joins captured spend (holds);
    # `anomalous` marks a decision the anomaly facts flagged (`anomaly.auto_halt` counts them). The
    # indexes serve a time range (analytics), one agent's recent decisions (rate spike and
    # auto-halt counts), its last allowed amounts in a currency (amount score), and whether it
    # was already allowed to pay a recipient (new recipient); the last two cover their queries.
    (
        9,
        """
        CREATE TABLE decision_facts (
            decision_id  TEXT PRIMARY KEY,
            created_us   INTEGER NOT NULL,
            agent        TEXT NOT NULL,
            action       TEXT NOT NULL,
            category     TEXT,
            currency     TEXT NOT NULL,
            amount_minor INTEGER NOT NULL CHECK (typeof(amount_minor) = 'integer'
                                                 AND amount_minor > 0),
            recipient    TEXT NOT NULL,
            outcome      TEXT NOT NULL CHECK (outcome IN ('allow', 'deny', 'require_approval')),
            reason_code  TEXT NOT NULL,
            hold_id      TEXT,
            anomalous    INTEGER NOT NULL DEFAULT 0 CHECK (anomalous IN (0, 1))
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX decision_facts_time ON decision_facts (created_us);
        CREATE INDEX decision_facts_agent ON decision_facts (agent, created_us);
        CREATE INDEX decision_facts_amounts
            ON decision_facts (agent, outcome, currency, created_us, decision_id, amount_minor);
        CREATE INDEX decision_facts_paid ON decision_facts (agent, outcome, recipient);
        """,
    ),
    # Alerts (issue 17, `paywarden.alerting`): one row per alert raised. `dedup_key` names what
    # it fired about (an alert rule and a budget's window and threshold, a breaker opening, an
    # approval ...) and is unique, so among writers racing to raise the same alert (threads,
    # processes on one file) exactly one INSERT wins; it is claimed in the transaction that
    # records the cause, or by the sweep (docs/observability.md, "Alerts").
    (
        10,
        """
        CREATE TABLE alerts (
            alert_id    TEXT PRIMARY KEY,
            dedup_key   TEXT NOT NULL UNIQUE,
            rule_id     TEXT NOT NULL,
            kind        TEXT NOT NULL,
            ref_id      TEXT NOT NULL,
            text        TEXT NOT NULL,
            body        TEXT NOT NULL,
            created_us  INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX alerts_recent ON alerts (created_us, alert_id);
        CREATE INDEX alerts_kind ON alerts (kind, created_us);
        """,
    ),
    # Agent goal runs (issue 20, `actions.goals`): a goal in words, its attempts as canonical
    # JSON text, and how it ended (a payment, a pending approval, or why not).
    (
        11,
        """
        CREATE TABLE goal_runs (
            run_id       TEXT PRIMARY KEY,
            agent        TEXT NOT NULL,
            goal         TEXT NOT NULL,
            session_id   TEXT NOT NULL,
            status       TEXT NOT NULL CHECK (status IN ('running', 'paid', 'pending_approval',
                                                         'denied', 'exhausted', 'failed')),
            attempts     TEXT NOT NULL,
            max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),
            payment_id   TEXT,
            approval_id  TEXT,
            error        TEXT,
            created_us   INTEGER NOT NULL,
            updated_us   INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX goal_runs_agent ON goal_runs (agent, created_us);
        """,
    ),
    # AP2 mandates (issue 19, `paywarden.ledger.mandate_claims`): each presented nonce once per
    # audience (the INSERT of a replay does nothing), and each open mandate's cumulative spend
    # and uses, reserved by one conditional UPDATE. Migrations stay sorted by version.
    (
        12,
        """
        CREATE TABLE mandate_nonces (
            audience    TEXT NOT NULL,
            nonce       TEXT NOT NULL,
            mandate_id  TEXT NOT NULL,
            digest      TEXT NOT NULL,
            created_us  INTEGER NOT NULL,
            PRIMARY KEY (audience, nonce)
        ) STRICT, WITHOUT ROWID;
        CREATE TABLE mandate_usage (
            mandate_id  TEXT PRIMARY KEY,
            currency    TEXT NOT NULL,
            spent_minor INTEGER NOT NULL CHECK (spent_minor >= 0),
            uses        INTEGER NOT NULL CHECK (uses >= 0),
            updated_us  INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        """,
    ),
)


def statements(sql: str) -> list[str]:
    """Split a migration into complete statements (trigger bodies contain semicolons)."""
    result: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                result.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {buffer.strip()[:60]}")
    return result


SCHEMA_VERSION: Final = MIGRATIONS[-1][0]
