"""The public API is exactly what `paywarden.__all__` lists, sorted, and each name resolves."""

from __future__ import annotations

import paywarden


def test_all_is_sorted_and_names_exist() -> None:
    names = [name for name in paywarden.__all__ if name != "__version__"]
    assert names == sorted(names)
    for name in paywarden.__all__:
        assert hasattr(paywarden, name), name


def test_all_lists_every_public_name() -> None:
    for name in paywarden.__all__:  # names resolve lazily: resolve every one first
        getattr(paywarden, name)
    public = {
        name
        for name, value in vars(paywarden).items()
        if not name.startswith("_") and not isinstance(value, type(paywarden))
    }
    assert public == set(paywarden.__all__) - {"__version__"}
