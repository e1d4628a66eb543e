"""LLM adapters behind the planner port (`paywarden.agents.port.Planner`)."""
