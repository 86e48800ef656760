"""bench/chaos.py runs end to end in its quick mode: services killed under load, then the books.

Checked here: it killed the signer and one of quota and gateway (and restarted them), the load got
through, and nothing was lost, charged twice, reused or left invalid. How many operations got
through an outage is for the run's readers, never for a timed test.
"""

import json
import re
from pathlib import Path

import pytest

from tests.bench.runs import run_benchmark
from tests.conftest import require_corpus, require_postgres, require_redis_server

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]

RESULT = re.compile(
    r"RESULT ops=(?P<ops>\d+) succeeded=(?P<succeeded>\d+) failed_cleanly=(?P<failed>\d+)"
    r" kills=(?P<kills>\d+) lost_quota=(?P<lost>\d+) double_charges=(?P<double>\d+)"
    r" reused_serials=(?P<reused>\d+) invalid_pdfs=(?P<invalid>\d+)"
)


def test_quick_chaos_run_kills_services_and_loses_nothing(tmp_path: Path) -> None:
    server = require_postgres("chaos run smoke test")
    require_corpus()
    require_redis_server("chaos run")
    run_file = tmp_path / "chaos.json"
    run = run_benchmark(
        "chaos.py",
        "--quick",
        "--seed",
        "7",
        "--postgres-url",
        server.render_as_string(hide_password=False),
        "--json-out",
        str(run_file),
        timeout=220,
    )
    found, output = run.result(RESULT), run.output
    figures = {name: int(value) for name, value in found.groupdict().items()}
    assert (figures["lost"], figures["double"], figures["reused"], figures["invalid"]) == (0, 0, 0, 0), output
    assert figures["ops"] > 0 and figures["succeeded"] > 0, output
    assert figures["kills"] >= 2, output

    saved = json.loads(run_file.read_text())
    assert saved["kind"] == "chaos" and saved["samples"], saved
    assert saved["result"]["kills"] == figures["kills"]
    killed = [e["target"] for e in saved["events"] if e["kind"] == "kill"]
    restarted = [e["target"] for e in saved["events"] if e["kind"] == "restart"]
    assert "signer" in killed and {"quota", "gateway"} & set(killed), saved["events"]
    assert restarted == killed, "every service killed was started again"
    assert "emeterai audit verify: exit 0" in output and "emeterai audit reconcile: exit 0" in output
