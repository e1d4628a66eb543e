"""The spend ledger: budget claims, holds and their resolution, and budget status."""
