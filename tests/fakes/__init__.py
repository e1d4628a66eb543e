"""Test doubles that run as real processes or real servers: a crash-injecting payment worker
and a fake Stripe HTTP API on loopback."""
