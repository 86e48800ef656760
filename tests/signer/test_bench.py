"""bench/signer.py runs end to end and ends with its RESULT line (timings are not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_corpus

BENCH = Path(__file__).resolve().parents[2] / "bench" / "signer.py"
RESULT = re.compile(
    r"RESULT ours_small_rsa=[\d.]+ ours_large_rsa=[\d.]+ ours_small_p256=[\d.]+ "
    r"pyhanko_small_rsa=[\d.]+ pyhanko_large_rsa=[\d.]+ heap_over_input_mib=-?[\d.]+ rss_mib=[\d.]+"
)


def test_the_quick_bench_ends_with_a_result_line() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--corpus", str(require_corpus())],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    last = run.stdout.strip().splitlines()[-1]
    assert RESULT.fullmatch(last), run.stdout
    assert float(re.search(r"ours_small_rsa=([\d.]+)", last).group(1)) > 0
