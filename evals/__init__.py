"""T-Eval, code-interpreter math and the OpenCompass bridge (see docs/design.md §7)."""
