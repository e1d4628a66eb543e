"""Agents that pay: the LLM port, the offline planner, the payment guard decorator and the
framework adapters (docs/agents.md).

An agent's goal in words becomes a payment through `actions.goals`: a planner (an LLM behind
the `Planner` port, or the rule-based `OfflinePlanner`) proposes a payment as JSON, the proposal
is parsed strictly (`proposal.parse_proposal`), and the policy decides. The planner proposes;
it never decides.
"""
