"""Agent patterns, each one file declaring a LangGraph graph from the shared nodes."""
