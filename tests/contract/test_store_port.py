"""The store port's shape: one repository per aggregate on the unit of work, every method named
by the scheme written in paywarden/ports.py, and every store exposing each repository."""

from __future__ import annotations

import inspect
import re

import pytest

from paywarden import ports
from paywarden.ports import Store

NAME_SCHEME = re.compile(
    r"^(get|get_[a-z_]+|list_[a-z_]+|insert|insert_[a-z_]+|transition|transition_[a-z_]+"
    r"|set|set_[a-z_]+"
    r"|reserve|release|restore|consume|revoke|claim|finish|mark|save|delete|append|add_refund"
    r"|lock_counter)$"
)
FORBIDDEN_SHAPES = re.compile(r"^[a-z]+s$|^[a-z]+_(insert|get|transition|set)$")


def _repositories() -> dict[str, type]:
    """The UnitOfWork's attributes and the repository protocol each one returns."""
    hints = {
        name: inspect.signature(member.fget).return_annotation
        for name, member in vars(ports.UnitOfWork).items()
        if isinstance(member, property) and member.fget is not None
    }
    return {name: getattr(ports, annotation) for name, annotation in hints.items()}


def _methods(protocol: type) -> list[str]:
    return [
        name
        for name in vars(protocol)
        if not name.startswith("_") and callable(vars(protocol)[name])
    ]


def test_every_repository_protocol_is_on_the_unit_of_work() -> None:
    declared = {
        name
        for name, value in vars(ports).items()
        if name.endswith("Repository") and isinstance(value, type)
    }
    exposed = {protocol.__name__ for protocol in _repositories().values()}
    assert declared == exposed
    assert len(exposed) == len(_repositories())  # one attribute per repository


@pytest.mark.parametrize("attribute", sorted(_repositories()))
def test_repository_methods_follow_the_naming_scheme(attribute: str) -> None:
    methods = _methods(_repositories()[attribute])
    assert methods, f"{attribute} has no methods"
    bad = [name for name in methods if not NAME_SCHEME.match(name) or FORBIDDEN_SHAPES.match(name)]
    assert not bad, f"tx.{attribute}: {bad} do not follow the naming scheme of ports.py"


def test_the_scheme_check_can_fail() -> None:
    for old_style in ("approvals", "approval_open", "approval_insert", "hold_set_expiry"):
        assert not NAME_SCHEME.match(old_style) or FORBIDDEN_SHAPES.match(old_style)


def test_a_store_exposes_every_repository_with_every_method(store: Store) -> None:
    with store.read() as tx:
        for attribute, protocol in _repositories().items():
            repository = getattr(tx, attribute)
            missing = [
                name for name in _methods(protocol) if not callable(getattr(repository, name, None))
            ]
            assert not missing, f"tx.{attribute} lacks {missing}"
