"""bench/scale.py runs end to end in its quick mode: the stack with one signer, then two, a RESULT.

Only that it works, that the gateway stamped through every run and that the books agree are
checked here; its figures are for the benchmark's readers, never for a timed test.
"""

import re

import pytest

from tests.bench.runs import run_benchmark
from tests.conftest import require_postgres, require_redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(300)]

RESULT = re.compile(
    r"RESULT one_signer_per_s=(?P<one>[\d.]+) two_signers_per_s=(?P<two>[\d.]+) factor=[\d.]+"
)


def test_quick_scale_run_stamps_through_one_and_two_signers_and_loses_nothing() -> None:
    server = require_postgres("scale benchmark smoke test")
    redis_url = require_redis("scale benchmark smoke test")
    run = run_benchmark(
        "scale.py",
        "--quick",
        "--postgres-url",
        server.render_as_string(hide_password=False),
        "--redis-url",
        redis_url,
        timeout=280,
    )
    found, output = run.result(RESULT), run.output
    assert float(found["one"]) > 0 and float(found["two"]) > 0, output
    assert "lost quota: 0;" in output, output
    assert output.count("emeterai audit reconcile: exit 0") == 2, output
    assert "failed {}" in output and "failed {'" not in output, output
