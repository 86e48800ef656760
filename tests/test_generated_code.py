"""The committed emeterai.v1 package must be exactly what protos/ generates."""

import filecmp
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_package_is_fresh(tmp_path: Path) -> None:
    _load_generator().generate(tmp_path)
    fresh = tmp_path / "emeterai" / "v1"
    committed = ROOT / "emeterai" / "v1"
    fresh_names = {p.name for p in fresh.iterdir() if p.is_file()}
    committed_names = {p.name for p in committed.iterdir() if p.is_file()}
    assert fresh_names == committed_names, "run `make protos`: generated files were added or removed"
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, sorted(fresh_names), shallow=False)
    assert not mismatch and not errors, f"run `make protos`: stale generated files {mismatch + errors}"


def test_buf_lint_passes() -> None:
    buf = shutil.which("buf", path=str(Path(__import__("sys").executable).parent))
    if buf is None:
        pytest.fail("buf is not installed (pip install buf-bin, part of the dev extras)")
    result = subprocess.run([buf, "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
