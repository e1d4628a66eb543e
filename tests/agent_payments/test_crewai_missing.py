"""Without CrewAI (the main environment: it cannot be installed beside the other extras), the
CrewAI adapter still imports, and making its tool says which extra to install."""

from __future__ import annotations

import importlib.util

import pytest

from paywarden.agents.crewai import payment_tool
from paywarden.errors import InvalidInputError
from support.wardens import OpenWarden


@pytest.mark.skipif(importlib.util.find_spec("crewai") is not None, reason="CrewAI is installed")
def test_making_the_tool_without_crewai_names_the_extra(open_warden: OpenWarden) -> None:
    with pytest.raises(InvalidInputError) as raised:
        payment_tool(open_warden("currency: USD\nrules: []"), agent="agent-a")
    assert str(raised.value) == (
        "the CrewAI payment tool needs the crewai extra: pip install 'paywarden[crewai]'"
    )
