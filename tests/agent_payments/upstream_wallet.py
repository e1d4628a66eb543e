"""A payment MCP server of our own, the upstream of the proxy tests, run over stdio:
`python upstream_wallet.py LOG` appends one line to LOG per payment it really made."""

from __future__ import annotations

import sys
import time

from mcp.server.mcpserver import MCPServer

LOG = sys.argv[1]
server = MCPServer("wallet")


def _record(line: str) -> None:
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(line + "\n")


@server.tool()
def send_payment(amount: str, currency: str, to: str) -> str:
    """Send money."""
    if to == "broken.example":
        raise ValueError("the wallet refused the transfer")
    if to == "slow.example":
        time.sleep(60)  # far past the proxy's timeout in the tests
    _record(f"sent {amount} {currency} to {to}")
    return f"sent {amount} {currency} to {to}"


@server.tool()
def get_balance() -> str:
    """Read the balance."""
    return "balance: 1000.00 USD"


@server.tool()
def export_keys() -> str:
    """Export the wallet's keys."""
    return "SECRET"


if __name__ == "__main__":
    server.run("stdio")
