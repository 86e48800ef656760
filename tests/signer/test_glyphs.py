"""The committed glyphs.py must be exactly what scripts/gen_glyphs.py makes from the DejaVu fonts."""

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    pytest.importorskip("fontTools", reason="fonttools (dev extras) makes glyphs.py")
    spec = importlib.util.spec_from_file_location("gen_glyphs", ROOT / "scripts" / "gen_glyphs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_glyphs_are_fresh() -> None:
    generator = _load_generator()
    fonts = [generator.FONT_DIR / name for name in generator.FONTS.values()]
    missing = [str(font) for font in fonts if not font.is_file()]
    if missing:
        pytest.skip(f"DejaVu fonts not installed (Debian: fonts-dejavu-core): {', '.join(missing)}")
    fresh = generator.render()
    committed = generator.OUTPUT.read_text(encoding="utf-8")
    if fresh != committed and os.environ.get("CI") != "true":
        # Another DejaVu release on a laptop may round a point differently; CI pins the fonts.
        pytest.skip("glyphs.py differs from these DejaVu fonts; compare with `python scripts/gen_glyphs.py`")
    assert fresh == committed, "run `python scripts/gen_glyphs.py`: services/signer/glyphs.py is stale"
