"""The use cases: plain functions taking the `Runtime` first, one module per aggregate.

See docs/architecture.md for the list, and `paywarden.warden` for the facade over them.
"""
