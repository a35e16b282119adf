"""Applications built on agentkit: a web chat UI and a customer-service support agent."""
