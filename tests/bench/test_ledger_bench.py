"""bench/ledger.py runs end to end in its quick mode: real services, PostgreSQL, SQLite, a RESULT.

Only that it works and its books agree is checked here; its figures are for the benchmark's own
readers, never for a timed test.
"""

import re

import pytest

from tests.bench.runs import run_benchmark
from tests.conftest import require_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(150)]

RESULT = re.compile(
    r"RESULT pg_pairs_per_s=(?P<pg>[\d.]+) pg_hot_pairs_per_s=(?P<hot>[\d.]+)"
    r" pg_orders_per_s=(?P<orders>[\d.]+) sqlite_pairs_per_s=(?P<sqlite>[\d.]+)"
)


def test_quick_run_ends_with_four_positive_rates_and_agreeing_books() -> None:
    server = require_postgres("ledger benchmark smoke tests")
    run = run_benchmark(
        "ledger.py", "--quick", "--postgres-url", server.render_as_string(hide_password=False), timeout=120
    )
    found, output = run.result(RESULT), run.output
    last = run.stdout.strip().splitlines()[-1]
    assert all(float(rate) > 0 for rate in found.groupdict().values()), last
    assert "BOOKS DISAGREE" not in output and output.count("books agree") == 5, output
    assert "error " not in run.stdout, output
