"""On-chain assets paywarden knows: which token a contract on a network is, and its decimals.

The x402 guard (`paywarden.x402`) maps a payment requirement's `(network, asset)` to a currency
code and exponent through this registry only. An asset or network missing here is denied, never
guessed: a token contract's decimals decide how many dollars an amount is, and a wrong guess is a
wrong payment. The addresses are the tokens' own contracts (Circle's USDC) on the networks listed;
decimals must agree with the currency table (`paywarden.money.DEFAULT_TOKEN_EXPONENTS`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from paywarden.money import DEFAULT_TOKEN_EXPONENTS


@dataclass(frozen=True, slots=True)
class Asset:
    """One token contract: its currency code, decimals, network (CAIP-2) and address."""

    currency: str
    decimals: int
    network: str
    address: str  # lower case, `0x` and 40 hex digits


_USDC: Final[Mapping[str, str]] = {
    "eip155:1": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",  # Ethereum
    "eip155:8453": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",  # Base
    "eip155:84532": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",  # Base Sepolia
    "eip155:137": "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359",  # Polygon PoS
    "eip155:43114": "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E",  # Avalanche C-Chain
}
_EVM_ADDRESS = re.compile(r"\A0x[0-9a-f]{40}\Z")


def _registry() -> dict[tuple[str, str], Asset]:
    decimals = DEFAULT_TOKEN_EXPONENTS["USDC"]
    return {
        (network, address.lower()): Asset("USDC", decimals, network, address.lower())
        for network, address in _USDC.items()
    }


ASSETS: Final[Mapping[tuple[str, str], Asset]] = _registry()
NETWORKS: Final = frozenset(network for network, _ in ASSETS)


def find_asset(network: str, address: str) -> Asset | None:
    """The registered asset at `address` on `network` (CAIP-2), or None: never a guess."""
    if not isinstance(network, str) or not isinstance(address, str):
        return None
    folded = address.lower()
    if not _EVM_ADDRESS.match(folded):
        return None
    return ASSETS.get((network, folded))
