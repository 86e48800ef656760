"""bench/surge.py runs end to end in its quick mode: the whole stack, PostgreSQL, Redis, a RESULT.

Only that it works, that nothing was lost and no answer was a 5xx are checked here, and that the
surge really met the waiting room; its figures are for the benchmark's readers, never for a
timed test.
"""

import re
from pathlib import Path

import pytest

from bench.runfile import read_run
from tests.bench.runs import run_benchmark
from tests.conftest import require_postgres, require_redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(300)]

RESULT = re.compile(
    r"RESULT admitted_per_s=(?P<admitted>[\d.]+) pool_capacity_per_s=(?P<pool>[\d.]+)"
    r" stamp_p50_ms=[\d.]+ stamp_p99_ms=[\d.]+ purchase_p99_ms=[\d.]+ purchase_p99_unloaded_ms=[\d.]+"
    r" http_5xx=(?P<http_5xx>[\d.]+) lost_quota=(?P<lost>[\d.]+) gateway_cpu_ms_per_stamp=[\d.]+"
)


def test_quick_surge_loses_nothing_answers_no_5xx_and_turns_the_excess_away(tmp_path: Path) -> None:
    server = require_postgres("surge benchmark smoke test")
    redis_url = require_redis("surge benchmark smoke test")
    run = run_benchmark(
        "surge.py",
        "--quick",
        "--postgres-url",
        server.render_as_string(hide_password=False),
        "--redis-url",
        redis_url,
        "--json-out",
        str(tmp_path / "surge.json"),
        timeout=280,
    )
    found, output = run.result(RESULT), run.output
    assert float(found["http_5xx"]) == 0 and float(found["lost"]) == 0, output
    assert float(found["admitted"]) > 0 and float(found["pool"]) > 0, output
    assert re.search(r"statuses: \{.*429: [1-9]", output), f"no request met the waiting room:\n{output}"
    assert "emeterai audit reconcile: exit 0" in output, output
    # The buyers' process timed orders beside the surge, and reported what it could not create.
    assert re.search(r"purchases in the surge: .* over [1-9]\d* orders, \d+ not created", output), output

    # The run file, read as bench/report.py reads it: the surge second by second, the queue seen.
    surge = read_run(tmp_path / "surge.json")
    assert surge.kind == "surge" and surge.result["lost_quota"] == 0
    assert sum(s.succeeded for s in surge.samples) >= float(found["admitted"]), surge.samples
    assert sum(s.rejected for s in surge.samples) > 0, surge.samples
    assert any(s.queue_depth is not None for s in surge.samples), surge.samples
    assert {e.kind for e in surge.events} >= {"arrivals-start", "arrivals-end"}, surge.events
