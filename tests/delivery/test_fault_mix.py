"""The issue's fault mix: a few thousand relays through throttling, HTTP 500/429 and dropped connections,
with repeated webhooks and delivery receipts; every one is delivered exactly once, in order per recipient.

`python -m bench.fault_mix` prints the figures (same scenario, plus the tutorial's way to compare).
"""

from __future__ import annotations

import pytest

from bench.fault_mix import run


@pytest.mark.slow
def test_two_thousand_relays_under_the_fault_mix_arrive_exactly_once(tmp_path):
    result = run(n=2000, seed=7, workdir=tmp_path)
    # the faults really happened
    outcomes = result["fake_outcomes"]
    assert outcomes["status-1"] > 100 and outcomes["http-500"] > 50 and outcomes["http-429"] > 10
    assert outcomes["drop"] > 5
    assert result["webhooks_posted"] > result["relays"]  # Vonage-style repeats were sent
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["delivered_once"] == 2000
    assert result["recipients_out_of_order"] == 0  # among texts whose sends were unambiguous
    assert result["ambiguous_sends"] > 5
    assert result["failed_in_app"] == 0
