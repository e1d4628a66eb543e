"""FX rates declared in the policy, used exactly (as fractions), never as floats.

A rate is written as a pair `"EUR/USD": "1.08"`: one EUR is 1.08 USD. The inverse pair is
derived. There is no triangulation: a conversion that has no declared pair is impossible, and
callers fail closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class FxTable:
    """Declared rates as exact fractions, with the date they were declared as of."""

    as_of: str | None = None
    rates: Mapping[tuple[str, str], Fraction] = field(default_factory=dict)

    def rate(self, source: str, target: str) -> Fraction | None:
        """Units of `target` per unit of `source`, or None when no pair is declared."""
        if source == target:
            return Fraction(1)
        direct = self.rates.get((source, target))
        if direct is not None:
            return direct
        inverse = self.rates.get((target, source))
        return None if inverse is None else 1 / inverse

    def convert_minor(
        self,
        amount_minor: int,
        source: str,
        source_exponent: int,
        target: str,
        target_exponent: int,
    ) -> Fraction | None:
        """The exact value of `amount_minor` source units in target minor units, or None."""
        rate = self.rate(source, target)
        if rate is None:
            return None
        return amount_minor * rate * Fraction(10) ** (target_exponent - source_exponent)


EMPTY_FX = FxTable()


def ceil_fraction(value: Fraction) -> int:
    """Round up: converted charges are rounded against the budget holder, so tiny payments are
    never free."""
    return -((-value.numerator) // value.denominator)
