"""Every hard limit in paywarden, in one place, with the reason for its value.

Names put the unit last (`policy_file_bytes_max`, `rail_timeout_seconds`). A limit that a
deployment may want to change is a default here and a setting elsewhere; the rest are fixed.
"""

from __future__ import annotations

from typing import Final

# Money --------------------------------------------------------------------------------------

# 10**15 minor units is 10 trillion USD or 1 billion USDC at 6 decimals. It stays below
# 2**53, so an amount survives a round trip through any JSON parser that reads numbers as
# doubles, and far below 2**63 - 1, so sums of many amounts cannot overflow SQLite or
# PostgreSQL BIGINT counters.
amount_minor_max: Final = 10**15

# Enough digits for any amount below amount_minor_max in any exponent we accept (up to 18 for
# tokens), so the parser never rounds; Inexact is trapped anyway.
amount_text_chars_max: Final = 40

# Token exponents above 18 (wei-like units) would push realistic amounts past
# amount_minor_max; such tokens should be configured in a larger unit.
currency_exponent_max: Final = 18

# Intents ------------------------------------------------------------------------------------

# Identifiers (agent, action, environment, category, session, rail) are short machine names.
identifier_chars_max: Final = 128
# Recipients can be URLs (x402 resources) or e-mail addresses, so they get more room.
recipient_chars_max: Final = 512
# ... and as many bytes in UTF-8, so what is stored stays bounded whatever the script.
recipient_bytes_max: Final = 512
# Free text (purpose, recipient_name) is shown to humans, never interpreted.
free_text_chars_max: Final = 1024
# Stored sizes are bounded in bytes, whatever the script: a purpose of 1024 CJK characters
# would otherwise be 3 KB in an append-only log. A payee's display name needs far less.
free_text_bytes_max: Final = 1024
name_bytes_max: Final = 256
# Matches Stripe's idempotency key length limit.
idempotency_key_chars_max: Final = 255
# Metadata is for correlation ids, not documents.
metadata_entries_max: Final = 32
metadata_key_chars_max: Final = 64
metadata_value_chars_max: Final = 512
metadata_value_bytes_max: Final = 512
# All keys and values together: a denied request adds at most a few KB to the log.
metadata_bytes_max: Final = 4096
# Integers beyond 2**53 do not survive JSON parsers that read numbers as doubles.
metadata_int_abs_max: Final = 2**53

# Policy -------------------------------------------------------------------------------------

# A policy is written by people; a megabyte is already far more than anyone can review.
policy_file_bytes_max: Final = 1_000_000
policy_rules_count_max: Final = 2_000
# Patterns per list condition (allowlists of recipients can be long, but not unbounded).
policy_patterns_per_condition_max: Final = 10_000
# A recorded proof trace lists every rule of a policy up to this size; beyond it, only the rules
# that matched or failed (the policy version reproduces the rest), so a decision record stays a
# few KB whatever the policy's size.
trace_rules_listed_max: Final = 64
# When many rules decide one intent, its reason quotes the first few (and counts the others).
decision_reasons_max: Final = 8
# A rule's reason is one sentence for humans; a longer one is cut (with a compile warning).
rule_reason_chars_max: Final = 500
# CEL expressions are one-liners; long ones belong in structured conditions.
policy_expression_chars_max: Final = 4_096

# Ledger -------------------------------------------------------------------------------------

# An allowed intent should be paid within minutes; a hold that outlives this is released so a
# crashed caller cannot pin budget forever. Card authorisations live days, so 15 minutes is well
# inside any rail's own window.
hold_ttl_seconds: Final = 900
# SQLite's lock is not fair; past this wait the request is denied (`store_busy`), not queued.
store_busy_timeout_seconds: Final = 5.0
# Each authorize expires at most this many overdue holds, keeping its latency bounded.
expire_per_authorize_max: Final = 16
# One `expire_due` sweep handles at most this many holds per transaction.
expire_sweep_batch_max: Final = 500

# Approvals ----------------------------------------------------------------------------------

# A human should see a request while its context is fresh; 15 minutes also bounds how long an
# unanswered request pins budget. Policies may choose another default or per-rule lifetime.
approval_ttl_seconds: Final = 900
# No approval (and so no hold) may outlive a week: a stale request must be asked again.
approval_ttl_seconds_max: Final = 7 * 86_400
# Listing approvals, grants and halts returns at most this many rows.
list_rows_max: Final = 500
# Webhook delivery: a bounded number of attempts with exponential backoff (base, cap).
webhook_attempts_max: Final = 8
webhook_backoff_seconds: Final = 0.5
webhook_backoff_seconds_max: Final = 300.0
webhook_timeout_seconds: Final = 5.0

# Payments -----------------------------------------------------------------------------------

# Retries only for errors the rail marks safe, with the same key: a few, quickly backed off.
rail_retries_max: Final = 3
rail_retry_backoff_seconds: Final = 0.2
# The breaker opens after this many consecutive rail failures and probes after the cool-down.
breaker_failures_max: Final = 5
breaker_cooldown_seconds: Final = 30
# One reconcile pass looks at most at this many open payments.
reconcile_batch_max: Final = 200
# Reconcile leaves alone a submitted payment without any rail answer for this long: its worker
# may still be about to send it, and a rail that closes unknown keys would fail it under it.
reconcile_grace_seconds: Final = 120
