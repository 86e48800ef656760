"""Running a benchmark from bench/ as its smoke tests do: a subprocess, its output, its RESULT."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass

from tests.conftest import ROOT


@dataclass(frozen=True)
class BenchmarkRun:
    returncode: int
    stdout: str
    output: str  # stdout and stderr, for failure messages

    def result(self, pattern: re.Pattern[str]) -> re.Match[str]:
        """The RESULT line, which must be the last line and match pattern in full."""
        assert self.returncode == 0, self.output
        lines = self.stdout.strip().splitlines()
        found = pattern.fullmatch(lines[-1]) if lines else None
        assert found, f"the last line is not the RESULT line:\n{self.output}"
        return found


def run_benchmark(script: str, *args: str, timeout: float) -> BenchmarkRun:
    """bench/<script> with args, from the repository root."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    return BenchmarkRun(done.returncode, done.stdout, done.stdout + done.stderr)
