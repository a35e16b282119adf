"""examples/customer_service.py runs offline with its stand-in model: approved and rejected refunds, a ticket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "customer_service.py"


@pytest.mark.parametrize(("flags", "refunds"), [([], 1), (["--reject"], 0)])
def test_the_example_runs_and_the_database_shows_what_happened(flags, refunds):
    done = subprocess.run([sys.executable, str(EXAMPLE), "--no-faq", *flags], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[order_status] Order #" in out and "tracking number" in out
    assert "(needs approval: refund" in out
    assert f"refunds in the database: {refunds}, tickets: 1" in out
    if refunds:
        assert "[refund] Refund #1 of $" in out
    else:
        assert "the user rejected this call: refunds need a receipt" in out
