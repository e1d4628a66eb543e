"""Plain helpers shared by the tests (the fixtures are in tests/conftest.py).

- `wardens`: the `open_warden` fixture's type, operators, a sleep that does not sleep;
- `intents`: intents and request bodies with a module's own defaults;
- `policies`: the policies several test modules share, in tests/data/policies;
- `audit`: the audit log read back, from the Warden or straight from the file;
- `ledger_file`: the SQLite file read with plain sqlite3;
- `mcp`: the MCP server driven by the SDK's in-process client;
- `servers`: loopback ports, uvicorn in a thread, subprocesses stopped cleanly.
"""
