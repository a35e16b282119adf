"""Tools agents can call. The full registry grows here; the interface agents consume is agentkit.toolspec."""
