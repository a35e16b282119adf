"""agentkit: agents where the model is one pluggable part."""
