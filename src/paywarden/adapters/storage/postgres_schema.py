"""Versioned schema migrations of the PostgreSQL store.

The same tables as the SQLite store at its current version (`sqlite_schema.py`), in PostgreSQL
types: amounts and microsecond times are BIGINT, hashes and compressed audit bodies BYTEA. The
CHECK constraints are the same second line of defence behind the code (no zero, negative or
fractional amount, no negative counter, only known states). As on SQLite there is no
`spent <= limit` constraint: an operator may lower a limit below current spend to freeze a
budget; the reserve statement enforces the limit.

Every migration is additive (new tables, columns with defaults, indexes), so gateways of the
previous version keep working while a newer one migrates; a store refuses a schema newer than
the last version it knows (`postgres.PostgresStore`).

The audit log is append-only in the database itself: BEFORE UPDATE / DELETE row triggers and a
BEFORE TRUNCATE statement trigger raise, whoever the role (even the owner must first drop the
trigger, which is itself a logged DDL statement), and `grant_statements` gives the gateway's role
only SELECT and INSERT on it. `audit_head` is the one-row head of the chain: appending an entry
locks it (`SELECT ... FOR UPDATE`), so every process on every host appends to one linear chain.
"""

from __future__ import annotations

import re
from typing import Final

MIGRATIONS: Final[tuple[tuple[int, str, str], ...]] = (
    (
        1,
        "ledger, audit log, workflows, keys (the SQLite schema at version 8)",
        """
        CREATE TABLE decisions (
            decision_id TEXT PRIMARY KEY,
            audit_seq   BIGINT NOT NULL
        );
        CREATE TABLE decision_keys (
            agent           TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            decision_id     TEXT NOT NULL,
            fingerprint     TEXT NOT NULL,
            PRIMARY KEY (agent, idempotency_key)
        );

        CREATE TABLE holds (
            hold_id        TEXT PRIMARY KEY,
            decision_id    TEXT NOT NULL,
            agent          TEXT NOT NULL,
            amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
            currency       TEXT NOT NULL,
            state          TEXT NOT NULL CHECK (state IN ('held', 'captured', 'voided', 'expired')),
            created_us     BIGINT NOT NULL,
            expires_us     BIGINT NOT NULL CHECK (expires_us > created_us),
            resolved_us    BIGINT,
            captured_minor BIGINT CHECK (captured_minor IS NULL OR
                                         (captured_minor > 0 AND captured_minor <= amount_minor))
        );
        CREATE INDEX holds_due ON holds (expires_us) WHERE state = 'held';

        CREATE TABLE budget_counters (
            budget_id       TEXT NOT NULL,
            scope_key       TEXT NOT NULL,
            window_start_us BIGINT NOT NULL,
            currency        TEXT NOT NULL,
            spent_minor     BIGINT NOT NULL DEFAULT 0 CHECK (spent_minor >= 0),
            held_minor      BIGINT NOT NULL DEFAULT 0 CHECK (held_minor >= 0),
            PRIMARY KEY (budget_id, scope_key, window_start_us)
        );

        CREATE TABLE hold_charges (
            hold_id         TEXT NOT NULL,
            budget_id       TEXT NOT NULL,
            scope_key       TEXT NOT NULL,
            window_start_us BIGINT NOT NULL,
            amount_minor    BIGINT NOT NULL CHECK (amount_minor > 0),
            created_us      BIGINT NOT NULL,
            state           TEXT NOT NULL
                            CHECK (state IN ('held', 'captured', 'voided', 'expired')),
            restored_minor  BIGINT NOT NULL DEFAULT 0 CHECK (restored_minor >= 0),
            PRIMARY KEY (hold_id, budget_id)
        );
        CREATE INDEX hold_charges_rolling
            ON hold_charges (budget_id, scope_key, created_us) WHERE window_start_us = -1;

        CREATE TABLE velocity_events (
            velocity_id TEXT NOT NULL,
            scope_key   TEXT NOT NULL,
            created_us  BIGINT NOT NULL,
            hold_id     TEXT
        );
        CREATE INDEX velocity_events_window ON velocity_events (velocity_id, scope_key, created_us);

        CREATE TABLE audit_log (
            seq         BIGINT PRIMARY KEY CHECK (seq > 0),
            created_us  BIGINT NOT NULL,
            kind        TEXT NOT NULL,
            ref_id      TEXT NOT NULL,
            parent_hash BYTEA NOT NULL CHECK (length(parent_hash) = 32),
            entry_hash  BYTEA NOT NULL CHECK (length(entry_hash) = 32),
            body        BYTEA NOT NULL CHECK (length(body) > 0)
        );
        CREATE INDEX audit_log_ref ON audit_log (ref_id);
        CREATE TABLE audit_head (
            one         BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
            seq         BIGINT NOT NULL DEFAULT 0,
            created_us  BIGINT NOT NULL DEFAULT 0,
            kind        TEXT NOT NULL DEFAULT '',
            ref_id      TEXT NOT NULL DEFAULT '',
            parent_hash BYTEA NOT NULL DEFAULT '\\x'::bytea,
            entry_hash  BYTEA NOT NULL DEFAULT '\\x'::bytea
        );
        INSERT INTO audit_head (one) VALUES (TRUE);
        CREATE FUNCTION paywarden_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
        END;
        $$;
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION paywarden_audit_append_only();
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION paywarden_audit_append_only();
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );

        CREATE TABLE operators (
            operator_id TEXT PRIMARY KEY,
            name        TEXT NOT NULL,
            created_us  BIGINT NOT NULL,
            disabled_us BIGINT
        );

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
            created_us  BIGINT NOT NULL,
            expires_us  BIGINT NOT NULL CHECK (expires_us > created_us),
            decided_us  BIGINT,
            note        TEXT
        );
        CREATE INDEX approvals_open ON approvals (agent, binding)
            WHERE status IN ('pending', 'approved');
        CREATE INDEX approvals_hold ON approvals (hold_id);
        CREATE INDEX approvals_pending_agent ON approvals (agent, expires_us, hold_id)
            WHERE status = 'pending';

        CREATE TABLE approval_votes (
            approval_id TEXT NOT NULL,
            operator_id TEXT NOT NULL,
            vote        TEXT NOT NULL CHECK (vote IN ('approve', 'reject')),
            reason      TEXT NOT NULL,
            created_us  BIGINT NOT NULL,
            PRIMARY KEY (approval_id, operator_id)
        );

        CREATE TABLE grants (
            grant_id          TEXT PRIMARY KEY,
            agent             TEXT NOT NULL,
            action            TEXT NOT NULL,
            currency          TEXT NOT NULL,
            per_payment_minor BIGINT NOT NULL CHECK (per_payment_minor > 0),
            total_minor       BIGINT NOT NULL CHECK (total_minor > 0),
            used_minor        BIGINT NOT NULL DEFAULT 0 CHECK (used_minor >= 0),
            uses_max          INTEGER CHECK (uses_max IS NULL OR uses_max > 0),
            uses              INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
            recipients        TEXT NOT NULL,
            created_by        TEXT NOT NULL,
            created_us        BIGINT NOT NULL,
            expires_us        BIGINT NOT NULL CHECK (expires_us > created_us),
            revoked_us        BIGINT,
            CHECK (used_minor <= total_minor)
        );

        CREATE TABLE halts (
            scope      TEXT PRIMARY KEY,
            reason     TEXT NOT NULL,
            actor      TEXT NOT NULL,
            created_us BIGINT NOT NULL
        );

        CREATE TABLE outbox (
            event_id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            kind            TEXT NOT NULL,
            body            TEXT NOT NULL,
            created_us      BIGINT NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_us BIGINT NOT NULL,
            delivered_us    BIGINT,
            last_error      TEXT
        );
        CREATE INDEX outbox_due ON outbox (next_attempt_us) WHERE delivered_us IS NULL;

        CREATE TABLE payments (
            payment_id      TEXT PRIMARY KEY,
            decision_id     TEXT NOT NULL UNIQUE,
            hold_id         TEXT NOT NULL,
            agent           TEXT NOT NULL,
            rail            TEXT NOT NULL,
            rail_key        TEXT NOT NULL UNIQUE,
            intent          TEXT NOT NULL,
            amount_minor    BIGINT NOT NULL CHECK (amount_minor > 0),
            currency        TEXT NOT NULL,
            state           TEXT NOT NULL CHECK (state IN ('authorized', 'submitted', 'settled',
                                                          'failed', 'unknown', 'refunded')),
            rail_payment_id TEXT,
            refunded_minor  BIGINT NOT NULL DEFAULT 0
                            CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
            error           TEXT,
            created_us      BIGINT NOT NULL,
            updated_us      BIGINT NOT NULL
        );
        CREATE INDEX payments_open ON payments (state)
            WHERE state IN ('authorized', 'submitted', 'unknown');

        CREATE TABLE breakers (
            rail                 TEXT PRIMARY KEY,
            state                TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
            consecutive_failures INTEGER NOT NULL CHECK (consecutive_failures >= 0),
            opened_us            BIGINT
        );

        CREATE TABLE sessions (
            agent      TEXT NOT NULL,
            session_id TEXT NOT NULL,
            phase      TEXT NOT NULL CHECK (phase IN ('EXPLORE', 'DECIDE', 'COMMIT', 'CLOSED')),
            created_us BIGINT NOT NULL,
            updated_us BIGINT NOT NULL,
            PRIMARY KEY (agent, session_id)
        );

        CREATE TABLE refunds (
            refund_id      TEXT PRIMARY KEY,
            payment_id     TEXT NOT NULL,
            amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
            currency       TEXT NOT NULL,
            state          TEXT NOT NULL CHECK (state IN ('submitted', 'settled', 'failed',
                                                         'unknown')),
            rail_key       TEXT NOT NULL UNIQUE,
            rail_refund_id TEXT,
            reason         TEXT NOT NULL,
            actor          TEXT NOT NULL,
            error          TEXT,
            created_us     BIGINT NOT NULL,
            updated_us     BIGINT NOT NULL
        );
        CREATE INDEX refunds_by_payment ON refunds (payment_id);

        CREATE TABLE disputes (
            dispute_id TEXT PRIMARY KEY,
            payment_id TEXT NOT NULL,
            status     TEXT NOT NULL CHECK (status IN ('open', 'under_review', 'refunded',
                                                       'rejected', 'withdrawn')),
            reason     TEXT NOT NULL,
            evidence   TEXT NOT NULL,
            opened_by  TEXT NOT NULL,
            resolution TEXT,
            refund_id  TEXT,
            created_us BIGINT NOT NULL,
            updated_us BIGINT NOT NULL
        );
        CREATE INDEX disputes_by_payment ON disputes (payment_id);

        CREATE TABLE scopes (
            scope_id   TEXT PRIMARY KEY,
            agent      TEXT NOT NULL,
            status     TEXT NOT NULL CHECK (status IN ('open', 'committed', 'compensated',
                                                       'compensation_failed')),
            created_us BIGINT NOT NULL,
            updated_us BIGINT NOT NULL
        );

        CREATE TABLE scope_steps (
            scope_id   TEXT NOT NULL,
            step       INTEGER NOT NULL CHECK (step >= 0),
            payment_id TEXT,
            label      TEXT NOT NULL,
            state      TEXT NOT NULL CHECK (state IN ('registered', 'compensated', 'failed')),
            error      TEXT,
            updated_us BIGINT NOT NULL,
            PRIMARY KEY (scope_id, step)
        );

        CREATE TABLE api_keys (
            key_id      TEXT PRIMARY KEY,
            prefix      TEXT NOT NULL,
            digest      TEXT NOT NULL,
            role        TEXT NOT NULL CHECK (role IN ('agent', 'operator', 'admin')),
            agent       TEXT,
            operator    TEXT,
            environment TEXT,
            created_by  TEXT NOT NULL,
            created_us  BIGINT NOT NULL,
            revoked_us  BIGINT,
            CHECK ((role = 'agent') = (agent IS NOT NULL)),
            CHECK ((role = 'operator') = (operator IS NOT NULL))
        );

        CREATE TABLE idempotency_keys (
            scope       TEXT NOT NULL,
            key         TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            state       TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
            status      INTEGER,
            body        TEXT,
            created_us  BIGINT NOT NULL,
            updated_us  BIGINT NOT NULL,
            PRIMARY KEY (scope, key)
        );
        """,
    ),
    (
        2,
        "decision facts for analytics and anomaly facts (the SQLite schema at version 9)",
        """
        CREATE TABLE decision_facts (
            decision_id  TEXT PRIMARY KEY,
            created_us   BIGINT NOT NULL,
            agent        TEXT NOT NULL,
            action       TEXT NOT NULL,
            category     TEXT,
            currency     TEXT NOT NULL,
            amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
            recipient    TEXT NOT NULL,
            outcome      TEXT NOT NULL CHECK (outcome IN ('allow', 'deny', 'require_approval')),
            reason_code  TEXT NOT NULL,
            hold_id      TEXT,
            anomalous    INTEGER NOT NULL DEFAULT 0 CHECK (anomalous IN (0, 1))
        );
        CREATE INDEX decision_facts_time ON decision_facts (created_us);
        CREATE INDEX decision_facts_agent ON decision_facts (agent, created_us);
        CREATE INDEX decision_facts_amounts
            ON decision_facts (agent, outcome, currency, created_us, decision_id, amount_minor);
        CREATE INDEX decision_facts_paid ON decision_facts (agent, outcome, recipient);
        """,
    ),
    (
        3,
        "alerts, each claimed once by its dedup key (the SQLite schema at version 10)",
        """
        CREATE TABLE alerts (
            alert_id    TEXT PRIMARY KEY,
            dedup_key   TEXT NOT NULL UNIQUE,
            rule_id     TEXT NOT NULL,
            kind        TEXT NOT NULL,
            ref_id      TEXT NOT NULL,
            text        TEXT NOT NULL,
            body        TEXT NOT NULL,
            created_us  BIGINT NOT NULL
        );
        CREATE INDEX alerts_recent ON alerts (created_us, alert_id);
        CREATE INDEX alerts_kind ON alerts (kind, created_us);
        """,
    ),
    (
        4,
        "agent goal runs (the SQLite schema at version 11)",
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
            created_us   BIGINT NOT NULL,
            updated_us   BIGINT NOT NULL
        );
        CREATE INDEX goal_runs_agent ON goal_runs (agent, created_us);
        """,
    ),
    # Kept sorted by version.
    (
        5,
        "AP2 mandate nonces and budgets (the SQLite schema at version 12)",
        """
        CREATE TABLE mandate_nonces (
            audience    TEXT NOT NULL,
            nonce       TEXT NOT NULL,
            mandate_id  TEXT NOT NULL,
            digest      TEXT NOT NULL,
            created_us  BIGINT NOT NULL,
            PRIMARY KEY (audience, nonce)
        );
        CREATE TABLE mandate_usage (
            mandate_id  TEXT PRIMARY KEY,
            currency    TEXT NOT NULL,
            spent_minor BIGINT NOT NULL CHECK (spent_minor >= 0),
            uses        BIGINT NOT NULL CHECK (uses >= 0),
            updated_us  BIGINT NOT NULL
        );
        """,
    ),
)

SCHEMA_VERSION: Final = MIGRATIONS[-1][0]

# The table every store reads first; created before any migration runs.
MIGRATIONS_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL, description TEXT NOT NULL)"
)

# Tables the gateway only reads and appends to; every other table it may read and write.
APPEND_ONLY_TABLES: Final = ("audit_log", "schema_migrations")


def grant_statements(role: str, tables: dict[str, str]) -> list[str]:
    """What the gateway's role needs on the store's tables (`paywarden db grant`): read and
    write every table but the append-only ones, which it may only read (and append to the audit
    log). `role` and the values of `tables` (table name -> quoted name) are quoted identifiers.
    """
    result = []
    for name, table in tables.items():
        if name in APPEND_ONLY_TABLES:
            result.append(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {role}")
            privileges = "SELECT" if name == "schema_migrations" else "SELECT, INSERT"
        else:
            privileges = "SELECT, INSERT, UPDATE, DELETE"
        result.append(f"GRANT {privileges} ON {table} TO {role}")
    return result


_TEXT_COLUMN = re.compile(r"\bTEXT\b(?! COLLATE)")


def column_collation(statements: str) -> str:
    """Every TEXT column of a migration in the "C" collation: ids sort and compare by their
    bytes, as on SQLite, whatever the database's default collation."""
    return _TEXT_COLUMN.sub('TEXT COLLATE "C"', statements)
