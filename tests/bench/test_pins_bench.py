"""bench/pins.py runs end to end in its quick mode: a real auth service, checks through one call each
and through BatchingAuthStub, the wrong-guess count-down, a RESULT.

Only that it works and answers right is checked here; its figures are for the benchmark's own
readers, never for a timed test.
"""

import re

import pytest

from tests.bench.runs import run_benchmark

pytestmark = pytest.mark.timeout(150)

RESULT = re.compile(
    r"RESULT single_checks_per_s=(?P<single>\d+) unary_checks_per_s=(?P<unary>\d+)"
    r" batched_checks_per_s=(?P<batched>\d+) unary_auth_cpu_ms_per_check=(?P<unary_cpu>[\d.]+)"
    r" batched_auth_cpu_ms_per_check=(?P<batched_cpu>[\d.]+)"
)


def test_quick_run_checks_right_pins_counts_wrong_ones_and_ends_with_positive_rates() -> None:
    run = run_benchmark("pins.py", "--quick", timeout=120)
    found = run.result(RESULT)
    assert all(float(found[name]) > 0 for name in ("single", "unary", "batched")), run.output
    assert "then locked" in run.output, run.output
