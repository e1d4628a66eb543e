"""The tamper-evident audit log: canonical bytes, redaction, the hash chain and checkpoints."""
