"""Pages that measure their user space in units other than points (/UserUnit, PDF 1.6)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import FloatObject, NameObject

from services.signer.errors import InvalidPlacement
from services.signer.pki import SigningIdentity
from services.signer.placement import Placement
from services.signer.stamping import place_stamp
from tests.conftest import require_corpus

from .conftest import PUBLIC_URL, SERIAL, pdfsig


def _with_user_unit(unit: float) -> bytes:
    writer = PdfWriter(
        clone_from=io.BytesIO((require_corpus() / "sf-002-libreoffice-writer.pdf").read_bytes())
    )
    writer.pages[0][NameObject("/UserUnit")] = FloatObject(unit)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _stamp(document: bytes, identity: SigningIdentity, placement: Placement) -> bytes:
    return place_stamp(
        document, serial=SERIAL, placement=placement, identity=identity, public_url=PUBLIC_URL
    ).stamped_document


def _widget_rect(stamped: bytes) -> list[float]:
    page = PdfReader(io.BytesIO(stamped)).pages[0]
    [widget] = [a.get_object() for a in page["/Annots"] if a.get_object().get("/FT") == "/Sig"]
    return [float(v) for v in widget["/Rect"]]


def test_a_box_in_points_lands_at_the_same_size_on_paper(identity: SigningIdentity, tmp_path: Path) -> None:
    document = _with_user_unit(2.0)
    stamped = _stamp(document, identity, Placement(page=1, rect=(400, 40, 520, 160)))
    assert stamped.startswith(document)
    # Two points per unit: the 120-point box is 60 units of this page's user space.
    assert _widget_rect(stamped) == pytest.approx([200, 20, 260, 80])
    path = tmp_path / "units.pdf"
    path.write_bytes(stamped)
    [ours] = pdfsig(path)
    assert ours.valid and ours.total_document


def test_the_default_stamp_keeps_its_paper_size(identity: SigningIdentity) -> None:
    llx, lly, urx, ury = _widget_rect(_stamp(_with_user_unit(4.0), identity, Placement(page=1)))
    assert (urx - llx, ury - lly) == pytest.approx((25, 25))  # 100 points at 4 points per unit


def test_the_page_size_in_points_bounds_the_box(identity: SigningIdentity) -> None:
    # An A4 page in 2-point units is 1190 points wide: a box past 600 points is still on it...
    _stamp(_with_user_unit(2.0), identity, Placement(page=1, rect=(1000, 40, 1100, 140)))
    # ...and one past 1190 points is not.
    with pytest.raises(InvalidPlacement, match="outside page 1"):
        _stamp(_with_user_unit(2.0), identity, Placement(page=1, rect=(1150, 40, 1250, 140)))
