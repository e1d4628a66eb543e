"""The preset dictionary of stored audit bodies (format 0x01, see body_codec.py). FROZEN.

DEFLATE finds a body's repeated strings within the body itself; a preset dictionary adds the
strings bodies share with each other (the JSON keys, `"outcome":"allow"`, `"dec_"`, ...), so a
body of a few hundred bytes still compresses several times. The dictionary is the skeleton of
every kind of audit body with its values left out, rarest kinds first: DEFLATE reaches the end
of a dictionary with the shortest codes, and decisions are most of the log.

Every entry stored in format 0x01 was compressed against exactly these bytes and can only be
read with them: never change this text. A better dictionary is a new format byte with a new
module, and this one stays for the entries already written (`DICTIONARY_1_SHA256` guards it).
"""

from __future__ import annotations

import hashlib
from typing import Final

_PARTS: Final = (
    (
        '{"actor":"admin:key_","policy_version":"invalid:policy_invalid",'
        '"previous_version":"sha256:","problems":["policy:1:1: error [rule `",'
        '"policy:2:1: warning: the policy has no allow rule, so it can never allow a payment"],'
        '"source":"policy","status":"rejected"}'
    ),
    (
        '{"actor":"admin:key_","agent":null,"environment":null,"key_id":"key_","operator":"",'
        '"prefix":"pw_live_","revoked_by":"admin:key_","role":"operator"}'
    ),
    '{"actor":"admin","name":"","operator_id":""}',
    '{"actor":"system","consecutive_failures":5,"probe_replaced":false,"rail":"stripe"}',
    '{"actor":"operator:","reason":"","scope":"*"}',
    '{"actor":"agent:","agent":"","from":"EXPLORE","phase":"DECIDE","session_id":""}',
    '{"actor":"agent:","agent":"","from":null,"phase":"COMMIT","session_id":""}',
    (
        '{"actor":"agent:","label":"","note":"refund `rfd_` is failed","payment_id":"pay_",'
        '"scope_id":"scp_","step":0}'
    ),
    '{"actor":"agent:","reason":"WorkflowFailed: ","scope_id":"scp_"}',
    '{"actor":"operator:","dispute_id":"dsp_","note":"","payment_id":"pay_"}',
    (
        '{"action":"payments.*","actor":"operator:","agent":"","currency":"USD",'
        '"expires_us":1767618000000000,"grant_id":"grant_","per_payment_minor":,"recipients":[],'
        '"total_minor":,"uses_max":null}'
    ),
    '{"actor":"agent:","amount_minor":,"currency":"USD","grant_id":"grant_"}',
    '{"actor":"operator:","approval_id":"apr_","reason":"","vote":"reject"}',
    '{"actor":"operator:","approval_id":"apr_","reason":"","vote":"approve"}',
    '{"actor":"system","approval_id":"apr_","approved_by":[""]}',
    (
        '{"actor":"system","approval_id":"apr_","hold_id":"hold_",'
        '"note":"at approval time: denied by rule `","status":"rejected"}'
    ),
    (
        '{"actor":"system","approval_id":"apr_","hold_id":"hold_","note":"expired",'
        '"status":"expired"}'
    ),
    '{"actor":"agent:","approval_id":"apr_","decision_id":"dec_"}',
    (
        '{"actor":"agent:","approval_id":"apr_","decision_id":"dec_","expires_us":,'
        '"hold_id":"hold_","required":1}'
    ),
    (
        '{"actor":"system","amount_minor":,"currency":"USD","error":null,"payment_id":"pay_",'
        '"rail_refund_id":null,"reason":"customer asked","refund_id":"rfd_"}'
    ),
    (
        '{"actor":"system","error":"timed out after the request was sent","payment_id":"pay_",'
        '"rail":"sandbox","rail_payment_id":null}'
    ),
    ('{"actor":"system","error":null,"payment_id":"pay_","rail":"stripe","rail_payment_id":"pi_"}'),
    (
        '{"actor":"system","error":null,"payment_id":"pay_","rail":"sandbox",'
        '"rail_payment_id":"sbx_pay_"}'
    ),
    ('{"actor":"agent:","decision_id":"dec_","error":null,"payment_id":"pay_","rail":"sandbox"}'),
    (
        '{"actor":"system","agent":"","amount_minor":,"captured_minor":null,"currency":"USD",'
        '"decision_id":"dec_","hold_id":"hold_","state":"expired"}'
    ),
    (
        '{"actor":"operator:","agent":"","amount_minor":,"captured_minor":null,"currency":"EUR",'
        '"decision_id":"dec_","hold_id":"hold_","state":"voided"}'
    ),
    (
        '{"actor":"system","agent":"","amount_minor":,"captured_minor":,"currency":"USD",'
        '"decision_id":"dec_","hold_id":"hold_","state":"captured"}'
    ),
    (
        '{"actor":"agent:","decision":{"approval_id":null,"decision_id":"dec_","hold_id":null,'
        '"outcome":"deny","policy_version":"sha256:","reason":"","reason_code":"invalid_input",'
        '"replayed":false,"rule_ids":[],"trace":{"budgets":[],"evaluated_at":"","notes":[],'
        '"phase":null,"policy_version":"sha256:","rules":[]},"warnings":[]},'
        '"error":"invalid_input","intent":{"action":"","agent":"","amount":"","currency":"",'
        '"recipient":"[redacted secret]"},"redacted":["$.intent.metadata."]}'
    ),
    (
        '{"actor":"agent:","decision":{"approval_id":null,"decision_id":"dec_","hold_id":null,'
        '"outcome":"deny","policy_version":"sha256:",'
        '"reason":"no rule allows `payments.transfer` of 25.00 USD to ``; denied by default",'
        '"reason_code":"no_rule_matched","replayed":false,"rule_ids":["budget:","velocity:"],'
        '"trace":{"budgets":[{"amount_minor":,"budget_id":"","currency":"EUR","gate":"over",'
        '"held_minor":0,"limit_minor":,"remaining_minor":0,"spent_minor":}],"evaluated_at":"",'
        '"notes":["approval pending"],"phase":"COMMIT","policy_version":"sha256:",'
        '"rules":[{"effect":"deny","error":null,"matched":true,"rule_id":""},'
        '{"effect":"require_approval","error":"","matched":false,"rule_id":""}],'
        '"rules_not_listed":},"warnings":["budget `` is past its warn gate ( USD of  USD)"]},'
        '"intent":{"action":"x402.pay","agent":"","amount_minor":,"category":"","currency":"USD",'
        '"environment":"staging","fingerprint":"","idempotency_key":"","metadata":{},'
        '"payee":{"identity":"","kind":"email"},"purpose":"","rail":"stripe",'
        '"recipient":"https://","recipient_name":"","recipient_original":"","secret_digest":"",'
        '"session_id":""},"redacted":["$.intent.purpose"]}'
    ),
    (
        '{"actor":"agent:","decision":{"approval_id":"apr_","decision_id":"dec_",'
        '"hold_id":"hold_","outcome":"require_approval","policy_version":"sha256:","reason":"",'
        '"reason_code":"approval_required","replayed":false,"rule_ids":[""],'
        '"trace":{"budgets":[],"evaluated_at":"","notes":[],"phase":null,'
        '"policy_version":"sha256:","rules":[{"effect":"require_approval","error":null,'
        '"matched":true,"rule_id":""}],"rules_not_listed":},"warnings":[]},'
        '"intent":{"action":"payments.payout","agent":"","amount_minor":,"category":null,'
        '"currency":"USD","environment":"production","fingerprint":"","idempotency_key":null,'
        '"metadata":{},"payee":{"identity":"","kind":"account"},"purpose":null,"rail":null,'
        '"recipient":"acct_","recipient_name":null,"session_id":null},"redacted":[]}'
    ),
    (
        '{"actor":"agent:","decision":{"approval_id":null,"decision_id":"dec_","hold_id":"hold_",'
        '"outcome":"allow","policy_version":"sha256:","reason":"","reason_code":"allowed",'
        '"replayed":false,"rule_ids":[""],"trace":{"budgets":[{"amount_minor":,"budget_id":"",'
        '"currency":"USD","gate":"ok","held_minor":,"limit_minor":,"remaining_minor":,'
        '"spent_minor":},{"amount_minor":,"budget_id":"","currency":"USD","gate":"ok",'
        '"held_minor":,"limit_minor":,"remaining_minor":,"spent_minor":}],"evaluated_at":"",'
        '"notes":[],"phase":null,"policy_version":"sha256:","rules":[{"effect":"allow",'
        '"error":null,"matched":true,"rule_id":""},{"effect":"allow","error":null,"matched":true,'
        '"rule_id":""}],"rules_not_listed":},"warnings":[]},'
        '"intent":{"action":"payments.transfer","agent":"","amount_minor":,"category":null,'
        '"currency":"USD","environment":"production","fingerprint":"","idempotency_key":null,'
        '"metadata":{},"payee":{"identity":"","kind":"domain"},"purpose":null,"rail":null,'
        '"recipient":"","recipient_name":null,"session_id":null},"redacted":[]}'
    ),
)
DICTIONARY_1: Final = "".join(_PARTS).encode("utf-8")
DICTIONARY_1_SHA256: Final = "372cfdf044d60806d7bf6e22135d2e0570404494d1a9aee928e1f3641f74f001"
if hashlib.sha256(DICTIONARY_1).hexdigest() != DICTIONARY_1_SHA256:  # pragma: no cover
    raise RuntimeError("paywarden.audit.body_dictionary was changed: stored bodies need it as is")
