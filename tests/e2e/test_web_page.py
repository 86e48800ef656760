"""The retail web page in headless Chromium, against the whole stack (`emeterai up`).

Chromium is Debian's (`make system-tools` installs it); Playwright drives it. Every wait is bounded:
Playwright's default timeout is set for the module, and loops have deadlines.
"""

from __future__ import annotations

import base64
import fnmatch
import io
import json
import os
import re
import struct
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Response, Route, expect, sync_playwright
from pypdf import PdfReader

from emeterai.v1 import common_pb2, distributor_service_pb2_grpc
from emeterai.v1 import distributor_service_pb2 as dpb
from services.gateway.web import CONTENT_SECURITY_POLICY, WEB_DIR
from tests.conftest import ROOT, require_corpus
from tests.e2e.local_stack import RunningStack, one_time_code, running_stack
from tests.webhook_receiver import wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 20_000
PIN = "482915"
SESSION_KEY = "emeterai.session"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

expect.set_options(timeout=WAIT_MS)


def require_chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    message = f"Chromium is missing at {CHROMIUM}; `make system-tools` installs Debian's chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # A new code may be asked for at once: resetting the PIN right after signing in needs one.
    quick_codes = {"EMETERAI_OTP_RESEND_AFTER_S": "0"}
    with running_stack(tmp_path_factory.mktemp("web-stack"), environment=quick_codes) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.http, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def corpus() -> Path:
    return require_corpus()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_chromium()
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A phone-sized page; an uncaught script error fails the test."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert not errors, errors


def open_page(page: Page, stack: RunningStack) -> None:
    page.goto(stack.http + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation").get_by_role("button", name=name, exact=True).click()


def sign_in_by_api(client: httpx.Client, phone: str, e164: str) -> dict[str, str]:
    assert client.post("/v1/auth/otp", json={"phone": phone}).status_code == 200
    tokens = client.post("/v1/auth/token", json={"phone": phone, "code": one_time_code(client, e164)})
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def buy_by_api(client: httpx.Client, tokens: dict[str, str], quantity: int, key: str) -> None:
    order = client.post(
        "/v1/orders", json={"quantity": quantity}, headers=bearer(tokens) | {"Idempotency-Key": key}
    )
    assert order.status_code == 201, order.text
    assert client.post(f"/v1/dev/payments/{order.json()['id']}/pay").json()["webhook_status"] == 200


def ready_user(client: httpx.Client, phone: str, e164: str, quantity: int) -> dict[str, str]:
    """A retail account signed in, with paid quota and the stamping PIN set."""
    tokens = sign_in_by_api(client, phone, e164)
    buy_by_api(client, tokens, quantity, f"buy-{e164}")
    assert client.put("/v1/account/pin", json={"pin": PIN}, headers=bearer(tokens)).status_code == 204
    return tokens


def open_signed_in(page: Page, stack: RunningStack, tokens: dict[str, str], phone: str) -> None:
    open_page(page, stack)
    session = {
        "access_token": tokens["access_token"],
        "refresh_token": tokens["refresh_token"],
        "phone": phone,
    }
    page.evaluate("([key, value]) => sessionStorage.setItem(key, value)", [SESSION_KEY, json.dumps(session)])
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#view-stamp")).to_be_visible()


def balance(client: httpx.Client, tokens: dict[str, str]) -> dict[str, int]:
    return client.get("/v1/balance", headers=bearer(tokens)).json()


def png_size(data_url: str) -> tuple[int, int]:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    png = base64.b64decode(data_url[len(prefix) :])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def multipart_fields(request: Request) -> dict[str, bytes]:
    """The fields of a multipart/form-data request the page sent, by name; a file field by its file's
    name, since the browser does not hand file contents to request observers."""
    boundary = request.headers["content-type"].split("boundary=", 1)[1].encode()
    body = request.post_data_buffer or b""
    fields = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'; name="([^"]+)"', head)
        assert name, head
        filename = re.search(rb'; filename="([^"]*)"', head)
        fields[name.group(1).decode()] = filename.group(1) if filename else value.removesuffix(b"\r\n")
    return fields


def chosen_rect(
    click: tuple[float, float], image: dict[str, float], page_pt: tuple[float, float]
) -> list[float]:
    """The 100-point box, centred on a click on the preview and kept on the page, in points."""
    width, height = page_pt
    x = (click[0] / image["width"]) * width
    y = (1 - click[1] / image["height"]) * height
    llx = min(max(x - 50, 0), width - 100)
    lly = min(max(y - 50, 0), height - 100)
    return [llx, lly, llx + 100, lly + 100]


# ---- the page and its files ------------------------------------------------------------------------


def test_the_page_and_its_files_come_from_the_gateway_alone(client: httpx.Client) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert index.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    assert index.headers["x-content-type-options"] == "nosniff"
    references = re.findall(r'(?:src|href)="([^"]*)"', index.text)
    assert references and all(r.startswith(("/static/", "#", "data:")) for r in references), references

    for name, media in [
        ("app.js", "text/javascript"),
        ("texts.js", "text/javascript"),
        ("style.css", "text/css"),
    ]:
        served = client.get(f"/static/{name}")
        assert served.status_code == 200, name
        assert served.headers["content-type"].startswith(media)
        assert "http://" not in served.text and "https://" not in served.text, f"{name} reaches outside"
        again = client.get(f"/static/{name}", headers={"If-None-Match": served.headers["etag"]})
        assert again.status_code == 304
    for missing in ("/static/nothing.js", "/static/..%2Fweb.py", "/static/%2E%2E/previews.py"):
        refused = client.get(missing)
        assert refused.status_code == 404, missing
        assert refused.headers["content-type"].startswith("application/problem+json")

    assert client.get("/v1/config").json() == {"sandbox_payments": True, "max_upload_bytes": 10 * 1024 * 1024}


def test_the_api_docs_render_in_a_browser_that_reaches_nothing_but_the_gateway(
    browser: Browser, stack: RunningStack
) -> None:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    outside: list[str] = []

    def only_the_gateway(route: Route, request: Request) -> None:
        if request.url.startswith(stack.http):
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    context.route("**/*", only_the_gateway)
    try:
        docs = context.new_page()
        docs.goto(stack.http + "/docs")
        # Swagger UI drew the API from /openapi.json: the stamping operation is there to try.
        expect(docs.locator(".opblock-summary-path", has_text="/v1/stamps").first).to_be_visible()
        expect(docs.get_by_text("Stamp a PDF").first).to_be_visible()
    finally:
        context.close()
    assert not outside, outside


def test_every_file_of_the_page_is_package_data() -> None:
    """An installed package must carry the page: each file matches the package-data globs."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["services.gateway"]
    files = [p.relative_to(WEB_DIR.parent).as_posix() for p in WEB_DIR.iterdir() if p.is_file()]
    assert {"web/index.html", "web/app.js", "web/texts.js", "web/style.css"} <= set(files)
    for file in files:
        assert any(fnmatch.fnmatch(file, pattern) for pattern in globs), file


# ---- previews ----------------------------------------------------------------------------------


def test_previews_of_real_pdfs_and_refusals(client: httpx.Client, corpus: Path) -> None:
    tokens = sign_in_by_api(client, "0812-7000-0001", "+6281270000001")

    def preview(content: bytes, page: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return client.post(
            "/v1/previews",
            data={"page": page},
            files={"file": ("doc.pdf", content, "application/pdf")},
            headers=bearer(tokens) if headers is None else headers,
        )

    last = preview((corpus / "sf-006-pdflatex-outline.pdf").read_bytes(), "0")
    assert last.status_code == 200, last.text
    body = last.json()
    assert (body["page"], body["page_count"]) == (4, 4)
    assert png_size(body["image"]) == (body["width_px"], body["height_px"]) == (566, 800)
    assert (body["width_pt"], body["height_pt"]) == pytest.approx((595.276, 841.89))

    rotated = preview((corpus / "sf-015-habibi-rotated.pdf").read_bytes(), "1").json()
    # /Rotate 90: the page is shown (and stamped) landscape.
    assert (rotated["width_pt"], rotated["height_pt"]) == pytest.approx((841.89, 595.28), abs=0.01)
    assert png_size(rotated["image"]) == (800, 566)

    refusals = {
        "encrypted": (preview((corpus / "sf-005-encrypted-password.pdf").read_bytes(), "1"), 400, "password"),
        "garbage": (preview(b"hello, not a pdf", "1"), 400, "not a PDF"),
        "broken": (preview(b"%PDF-1.7\n" + b"\x00garbage" * 100, "1"), 400, ""),
        "past the end": (
            preview((corpus / "sf-002-libreoffice-writer.pdf").read_bytes(), "9"),
            400,
            "Page 9",
        ),
        "anonymous": (preview(b"%PDF-1.7\n", "1", headers={}), 401, ""),
        "too large": (preview(b"%PDF-1.7\n" + b" " * (10 * 1024 * 1024), "1"), 413, "limit"),
    }
    for what, (response, status, words) in refusals.items():
        assert response.status_code == status, (what, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), what
        assert words in response.json()["detail"], (what, response.json())
        assert "Traceback" not in response.text
    assert client.get("/healthz").json() == {"status": "ok"}, "the gateway outlived what it was sent"


# ---- a retail user, start to finish ------------------------------------------------------------


def test_a_retail_user_stamps_a_document_through_the_page(
    page: Page, stack: RunningStack, client: httpx.Client, corpus: Path, tmp_path: Path
) -> None:
    phone, e164 = "0812-7000-0002", "+6281270000002"
    open_page(page, stack)
    assert page.evaluate("document.documentElement.lang") == "id"
    expect(page.get_by_role("heading", name="Masuk")).to_be_visible()

    # Sign in with the phone number and the one-time code from the development outbox.
    page.get_by_label("Nomor ponsel").fill(phone)
    page.get_by_role("button", name="Kirim kode").click()
    code_box = page.get_by_role("textbox", name="Kode sekali pakai")
    expect(code_box).to_be_visible()
    code_box.fill(one_time_code(client, e164))
    page.locator("#token-form").get_by_role("button", name="Masuk").click()
    expect(page.get_by_role("heading", name="Bubuhkan e-meterai")).to_be_visible()
    session = json.loads(page.evaluate(f"sessionStorage.getItem('{SESSION_KEY}')"))
    assert session["access_token"] and session["refresh_token"] and session["phone"] == e164
    tokens = {"access_token": session["access_token"]}
    expect(page.locator("#balance")).to_have_text("Kuota: 0 e-meterai")

    # Buy two stamps and pay in the sandbox.
    nav(page, "Beli kuota")
    page.get_by_label("Jumlah").fill("2")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/orders")) as ordered:
        page.get_by_role("button", name="Beli", exact=True).click()
    assert UUID.match(ordered.value.headers["idempotency-key"])
    expect(page.locator("#order-status")).to_have_text("Menunggu pembayaran")
    page.get_by_role("button", name="Bayar (sandbox)").click()
    expect(page.locator("#order-status")).to_have_text("Lunas")
    expect(page.get_by_role("button", name="Bayar (sandbox)")).to_have_count(0)
    expect(page.locator("#balance")).to_have_text("Kuota: 2 e-meterai")

    # The stamping PIN: two different entries are caught on the page, then it is set.
    nav(page, "PIN")
    page.locator("#new-pin").fill(PIN)
    page.get_by_label("Ulangi PIN baru").fill("111111")
    page.get_by_role("button", name="Simpan PIN").click()
    expect(page.locator("#error")).to_have_text("Kedua PIN baru tidak sama.")
    page.get_by_label("Ulangi PIN baru").fill(PIN)
    page.get_by_role("button", name="Simpan PIN").click()
    expect(page.locator("#info")).to_have_text("PIN disimpan.")

    # Upload a 4-page PDF, turn to page 2, and place the stamp by clicking on its preview.
    nav(page, "Bubuhkan")
    original_path = corpus / "sf-006-pdflatex-outline.pdf"
    original = original_path.read_bytes()
    page.get_by_label("Dokumen PDF").set_input_files(original_path)
    image = page.get_by_role("img", name="Pratinjau halaman 1 dari 4")
    expect(image).to_be_visible()
    expect(page.locator("#page-count")).to_have_text("dari 4")
    expect(page.locator("#placement-text")).to_contain_text("pojok kanan bawah halaman 1")
    page.get_by_label("Halaman", exact=True).fill("2")
    page.get_by_label("Halaman", exact=True).dispatch_event("change")
    image = page.get_by_role("img", name="Pratinjau halaman 2 dari 4")
    expect(image).to_be_visible()
    box = image.bounding_box()
    assert box is not None and box["width"] > 0
    page_pt = (595.276, 841.89)
    image.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
    expect(page.locator("#stamp-box")).to_be_visible()
    # The user changes their mind: a second click moves the box, here to near the top-left corner,
    # where it is kept on the page.
    click = (box["width"] * 0.05, box["height"] * 0.04)
    image.click(position={"x": click[0], "y": click[1]})
    expected = chosen_rect(click, box, page_pt)
    assert expected[0] == 0 and expected[3] == pytest.approx(page_pt[1], abs=0.01)
    overlay = page.locator("#stamp-box").bounding_box()
    assert overlay is not None
    assert overlay["x"] == pytest.approx(box["x"], abs=2)
    assert overlay["y"] == pytest.approx(box["y"], abs=2)
    assert overlay["width"] == pytest.approx(box["width"] * 100 / page_pt[0], abs=2)
    expect(page.locator("#placement-text")).to_have_text(
        f"E-meterai di halaman 2, 0 pt dari kiri dan {round(expected[1])} pt dari bawah (100 × 100 pt)."
    )

    page.get_by_label("Jenis dokumen").select_option("agreement")
    page.get_by_label("Nama dokumen").fill("Surat Perjanjian Sewa")
    page.get_by_label("Nomor dokumen").fill("SP-2026/001")
    page.get_by_label("Tanggal dokumen").fill("2026-11-20")
    page.get_by_label("Nilai dokumen (Rp)").fill("7500000")

    # A wrong PIN: the API's own words are shown, in the page's language, and nothing is charged.
    page.get_by_label("PIN e-meterai (6 angka)").fill("999999")
    page.get_by_role("button", name="Bubuhkan e-meterai").click()
    expect(page.locator("#error")).to_have_text(
        "PIN e-meterai salah; sisa 4 kali percobaan sebelum PIN terkunci"
    )
    assert balance(client, tokens)["available"] == 2

    page.get_by_label("PIN e-meterai (6 angka)").fill(PIN)
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/stamps")) as sent:
        page.get_by_role("button", name="Bubuhkan e-meterai").click()
    expect(page.locator("#stamp-result")).to_be_visible()
    serial = page.locator("#stamp-serial").inner_text()
    assert re.fullmatch(r"[0-9A-Z]{22}", serial)
    expect(page.locator("#balance")).to_have_text("Kuota: 1 e-meterai")
    assert UUID.match(sent.value.headers["idempotency-key"])
    [record] = client.get("/v1/stamps", headers=bearer(tokens)).json()["stamps"]
    assert (record["serial"], record["status"]) == (serial, "stamped")
    assert record["document"] == {
        "type": "agreement",
        "name": "Surat Perjanjian Sewa",
        "number": "SP-2026/001",
        "date": "2026-11-20",
        "value_idr": 7_500_000,
    }

    # Download: the original bytes stay an untouched prefix, poppler validates the signature, and
    # the widget sits where the click put it.
    with page.expect_download() as downloading:
        page.locator("#stamp-result").get_by_role("button", name="Unduh PDF").click()
    download = downloading.value
    assert download.suggested_filename == f"e-meterai-{serial}.pdf"
    stamped_path = tmp_path / "stamped.pdf"
    download.save_as(stamped_path)
    stamped = stamped_path.read_bytes()
    assert stamped.startswith(original) and len(stamped) > len(original)
    report = subprocess.run(["pdfsig", str(stamped_path)], capture_output=True, text=True, timeout=60).stdout
    assert "Signature is Valid." in report and "Total document signed" in report, report
    annotations = PdfReader(io.BytesIO(stamped)).pages[1]["/Annots"]
    [widget] = [a.get_object() for a in annotations if a.get_object().get("/FT") == "/Sig"]
    assert [float(v) for v in widget["/Rect"]] == pytest.approx(expected, abs=0.01)

    # History: the stamp as stamped, with its download, and the paid order.
    nav(page, "Riwayat")
    stamp_item = page.locator("#stamps li.record")
    expect(stamp_item).to_have_count(1)
    expect(stamp_item).to_contain_text("Surat Perjanjian Sewa")
    expect(stamp_item.locator(".status")).to_have_text("Dibubuhkan")
    expect(stamp_item.locator(".serial")).to_have_text(serial)
    expect(stamp_item.get_by_role("button", name="Unduh PDF")).to_be_visible()
    order_item = page.locator("#orders li.record")
    expect(order_item).to_have_count(1)
    expect(order_item).to_contain_text("2 e-meterai, Rp20.000")
    expect(order_item.locator(".status")).to_have_text("Lunas")

    # Verify the downloaded PDF without any special rights, and look its serial up.
    nav(page, "Verifikasi")
    page.get_by_label("PDF yang akan diperiksa").set_input_files(stamped_path)
    page.locator("#verify-form").get_by_role("button", name="Periksa", exact=True).click()
    verdict = page.locator("#verify-report")
    expect(verdict.locator(".verdict")).to_have_text("Sah")
    expect(verdict).to_contain_text(f"E-meterai {serial}")
    expect(verdict).to_contain_text("Dokumen tidak berubah sejak ditandatangani.")
    expect(verdict).to_contain_text("Tanda tangan mencakup seluruh dokumen.")
    page.get_by_label("Nomor seri").fill(serial.lower())
    page.locator("#serial-form").get_by_role("button", name="Periksa", exact=True).click()
    expect(page.locator("#serial-result")).to_contain_text(f"Nomor seri {serial} sah: dibubuhkan")

    # Bytes added after the stamp: what is wrong is said in the page's language.
    tampered_path = tmp_path / "tampered.pdf"
    tampered_path.write_bytes(stamped + b"\n% appended\n")
    page.get_by_label("PDF yang akan diperiksa").set_input_files(tampered_path)
    page.locator("#verify-form").get_by_role("button", name="Periksa", exact=True).click()
    expect(verdict.locator("li.bad").last).to_have_text(
        "Ada 12 byte tambahan setelah revisi yang ditandatangani, tetapi byte tersebut tidak"
        " membentuk revisi tersendiri."
    )

    # English, remembered across a reload; the session survives the reload too. The report is
    # asked for again, so its problems are in English too.
    page.get_by_role("button", name="English").click()
    assert page.evaluate("document.documentElement.lang") == "en"
    expect(page.get_by_role("navigation").get_by_role("button", name="History")).to_be_visible()
    expect(verdict.locator(".verdict")).to_have_text("Valid")
    expect(verdict).to_contain_text("The document has not changed since it was signed.")
    expect(verdict.locator("li.bad").last).to_have_text(
        "12 byte(s) follow the signed revision without forming a revision of their own."
    )
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.get_by_role("heading", name="Verify a document")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("Quota: 1 e-meterai")
    nav(page, "History")
    expect(page.locator("#stamps li.record .status")).to_have_text("Stamped")
    expect(page.locator("#orders li.record .status")).to_have_text("Paid")

    # An expired access token is refreshed once, and the call goes through.
    page.evaluate(
        """key => {
            const session = JSON.parse(sessionStorage.getItem(key));
            sessionStorage.setItem(key, JSON.stringify({...session, access_token: "expired"}));
        }""",
        SESSION_KEY,
    )
    with (
        page.expect_response(lambda r: r.url.endswith("/v1/auth/refresh") and r.ok),
        page.expect_response(lambda r: r.url.endswith("/v1/stamps") and r.status == 200),
    ):
        page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#stamps li.record .status")).to_have_text("Stamped")
    expect(page.locator("#error")).to_be_hidden()
    renewed = json.loads(page.evaluate(f"sessionStorage.getItem('{SESSION_KEY}')"))
    assert renewed["access_token"] not in ("expired", session["access_token"])
    assert client.get("/v1/balance", headers=bearer(renewed)).status_code == 200

    # Signing out forgets the tokens here and ends the session on the server.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{SESSION_KEY}')") is None
    refused = client.post("/v1/auth/refresh", json={"refresh_token": renewed["refresh_token"]})
    assert refused.status_code == 401, refused.text


def test_a_forgotten_pin_is_reset_with_a_fresh_code(
    page: Page, stack: RunningStack, client: httpx.Client
) -> None:
    tokens = ready_user(client, "0812-7000-0007", "+6281270000007", quantity=1)
    open_signed_in(page, stack, tokens, "+6281270000007")
    nav(page, "PIN")
    pin_view = page.locator("#view-pin")
    pin_view.get_by_role("button", name="Kirim kode").click()
    code_box = pin_view.get_by_role("textbox", name="Kode sekali pakai")
    expect(code_box).to_be_visible()
    expect(page.locator("#info")).to_contain_text("+6281270000007")
    code_box.fill(one_time_code(client, "+6281270000007"))
    pin_view.locator("#reset-pin").fill("604218")
    pin_view.get_by_role("button", name="Atur ulang PIN").click()
    expect(page.locator("#info")).to_have_text("PIN baru disimpan.")
    expect(code_box).to_be_hidden()
    # The new PIN is the one the account now has: changing it needs it as the current one.
    wrong = client.put("/v1/account/pin", json={"pin": "135790", "current_pin": PIN}, headers=bearer(tokens))
    assert wrong.status_code in (400, 403), wrong.text
    changed = client.put(
        "/v1/account/pin", json={"pin": "135790", "current_pin": "604218"}, headers=bearer(tokens)
    )
    assert changed.status_code == 204, changed.text


# ---- the waiting room, by the contract ---------------------------------------------------------------


def test_the_waiting_room_sends_the_same_stamp_again_with_its_ticket(
    page: Page, stack: RunningStack, client: httpx.Client, corpus: Path
) -> None:
    """Answers the server gives when stamping is over capacity, played to the page: a rate limit
    (no waiting room), then two waiting-room turns with their tickets, then the real stamp."""
    tokens = ready_user(client, "0812-7000-0003", "+6281270000003", quantity=1)
    canned = [
        (1, {"detail": "this account is sending requests faster than allowed; slow down"}),
        (2, {"detail": "stamping is busy", "waiting_room": {"ticket": "ticket-one", "position": 3}}),
        (1, {"detail": "stamping is busy", "waiting_room": {"ticket": "ticket-two", "position": 1}}),
    ]
    seen: list[Request] = []

    def answer(route: Route, request: Request) -> None:
        if request.method != "POST":
            route.continue_()
            return
        seen.append(request)
        if len(seen) > len(canned):
            route.continue_()
            return
        wait, problem = canned[len(seen) - 1]
        if "waiting_room" in problem:
            problem["waiting_room"]["retry_after"] = wait
        route.fulfill(
            status=429,
            headers={"Retry-After": str(wait), "Content-Type": "application/problem+json"},
            body=json.dumps({"type": "about:blank", "title": "Too many requests", "status": 429, **problem}),
        )

    open_signed_in(page, stack, tokens, "+6281270000003")
    page.route("**/v1/stamps", answer)
    page.get_by_label("Dokumen PDF").set_input_files(corpus / "sf-002-libreoffice-writer.pdf")
    expect(page.get_by_role("img", name="Pratinjau halaman 1 dari 1")).to_be_visible()
    page.get_by_label("PIN e-meterai (6 angka)").fill(PIN)
    page.get_by_role("button", name="Bubuhkan e-meterai").click()

    waiting = page.locator("#view-waiting")
    expect(waiting.get_by_role("heading", name="Ruang tunggu")).to_be_visible()
    expect(page.locator("#waiting-reason")).to_have_text(canned[0][1]["detail"])
    expect(page.locator("#waiting-position")).to_have_text("Posisi Anda dalam antrean: 3")
    expect(page.locator("#waiting-countdown")).to_have_text(re.compile(r"Mencoba lagi dalam [12] detik"))
    expect(page.locator("#waiting-position")).to_have_text("Posisi Anda dalam antrean: 1")
    expect(page.locator("#stamp-result")).to_be_visible()
    expect(waiting).to_be_hidden()

    assert len(seen) == 4
    keys = {request.headers["idempotency-key"] for request in seen}
    assert len(keys) == 1 and UUID.match(keys.pop())
    assert [r.headers.get("waiting-room-ticket") for r in seen] == [None, None, "ticket-one", "ticket-two"]
    forms = [multipart_fields(r) for r in seen]
    assert all(form == forms[0] for form in forms), "every attempt sends the very same form"
    assert (forms[0]["file"], forms[0]["pin"]) == (b"sf-002-libreoffice-writer.pdf", PIN.encode())
    assert balance(client, tokens)["consumed"] == 1


def test_other_errors_show_the_problem_detail_and_never_a_trace(
    page: Page, stack: RunningStack, client: httpx.Client, corpus: Path
) -> None:
    tokens = ready_user(client, "0812-7000-0004", "+6281270000004", quantity=1)
    open_signed_in(page, stack, tokens, "+6281270000004")
    # The server's own reason, in the page's language: Indonesian first, English after the switch.
    page.get_by_label("Dokumen PDF").set_input_files(corpus / "sf-005-encrypted-password.pdf")
    expect(page.locator("#error")).to_contain_text("PDF dilindungi kata sandi")
    expect(page.locator("#placement")).to_be_hidden()
    page.get_by_role("button", name="English").click()
    page.get_by_label("PDF document").set_input_files(corpus / "sf-002-libreoffice-writer.pdf")
    expect(page.get_by_role("img", name="Preview of page 1 of 1")).to_be_visible()
    page.get_by_label("PDF document").set_input_files(corpus / "sf-005-encrypted-password.pdf")
    expect(page.locator("#error")).to_contain_text("The PDF is password-protected")
    page.get_by_role("button", name="Bahasa Indonesia").click()

    def broken(route: Route, request: Request) -> None:
        if request.method != "POST":
            route.continue_()
            return
        route.fulfill(status=502, content_type="text/html", body="<h1>Traceback (most recent call last)</h1>")

    page.route("**/v1/stamps", broken)
    page.get_by_label("Dokumen PDF").set_input_files(corpus / "sf-002-libreoffice-writer.pdf")
    expect(page.get_by_role("img", name="Pratinjau halaman 1 dari 1")).to_be_visible()
    page.get_by_label("PIN e-meterai (6 angka)").fill(PIN)
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/stamps")) as first:
        page.get_by_role("button", name="Bubuhkan e-meterai").click()
    expect(page.locator("#error")).to_have_text("Terjadi kesalahan (HTTP 502). Coba lagi.")
    # Whether the first attempt took effect is unknown: the retry keeps its key.
    page.unroute("**/v1/stamps")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/stamps")) as second:
        page.get_by_role("button", name="Bubuhkan e-meterai").click()
    expect(page.locator("#stamp-result")).to_be_visible()
    assert first.value.headers["idempotency-key"] == second.value.headers["idempotency-key"]
    assert balance(client, tokens)["consumed"] == 1


def test_history_shows_a_released_stamp_and_refunded_orders_in_either_language(
    page: Page, stack: RunningStack, client: httpx.Client
) -> None:
    tokens = ready_user(client, "0812-7000-0009", "+6281270000009", quantity=3)
    user = bearer(tokens)
    # Past the gateway's checks, refused by the signer: its hold is released, the unit goes back.
    broken = client.post(
        "/v1/stamps",
        data={"pin": PIN, "page": "1", "doc_name": "Berkas rusak"},
        files={"file": ("rusak.pdf", b"%PDF-1.7\n" + b"\x00broken" * 100, "application/pdf")},
        headers=user | {"Idempotency-Key": "broken-1"},
    )
    assert broken.status_code in (400, 422), broken.text
    (first,) = client.get("/v1/orders", headers=user).json()["orders"]
    partly = client.post(
        f"/v1/orders/{first['id']}/refund", json={"quantity": 1}, headers=user | {"Idempotency-Key": "r-1"}
    )
    assert partly.status_code == 200, partly.text
    buy_by_api(client, tokens, 1, "buy-again-0009")
    second = next(
        o for o in client.get("/v1/orders", headers=user).json()["orders"] if o["id"] != first["id"]
    )
    whole = client.post(
        f"/v1/orders/{second['id']}/refund", json={}, headers=user | {"Idempotency-Key": "r-2"}
    )
    assert whole.status_code == 200, whole.text

    open_signed_in(page, stack, tokens, "+6281270000009")
    nav(page, "Riwayat")
    stamp_item = page.locator("#stamps li.record")
    expect(stamp_item).to_have_count(1)
    expect(stamp_item).to_contain_text("Berkas rusak")
    expect(stamp_item.locator(".status")).to_have_text(
        "Dibatalkan, kuota dikembalikan (penandatanganan gagal)"
    )
    expect(stamp_item.get_by_role("button", name="Unduh PDF")).to_have_count(0)
    partly_item = page.locator(f'#orders li.record[data-id="{first["id"]}"]')
    expect(partly_item.locator(".status")).to_have_text("Sebagian dikembalikan")
    expect(partly_item).to_contain_text("1 dikembalikan")
    whole_item = page.locator(f'#orders li.record[data-id="{second["id"]}"]')
    expect(whole_item.locator(".status")).to_have_text("Dikembalikan")

    page.get_by_role("button", name="English").click()
    expect(stamp_item.locator(".status")).to_have_text("Released, quota returned (signing failed)")
    expect(partly_item.locator(".status")).to_have_text("Partially refunded")
    expect(partly_item).to_contain_text("1 refunded")
    expect(whole_item.locator(".status")).to_have_text("Refunded")
    assert balance(client, tokens)["refunded"] == 2


# ---- the operators' notice ------------------------------------------------------------------------------


def test_the_operators_notice_appears_within_thirty_seconds_in_the_chosen_language(
    page: Page, stack: RunningStack, client: httpx.Client
) -> None:
    granted = stack.emeterai("operators", "add", "0815-7000-0005")
    assert granted.returncode == 0, granted.stderr
    operator = bearer(sign_in_by_api(client, "0815-7000-0005", "+6281570000005"))
    notice = {
        "text_id": "Layanan bea meterai lambat; pembubuhan tetap dicatat.",
        "text_en": "Stamp duty service is slow; stamps are still recorded.",
    }
    page.clock.install()
    open_page(page, stack)
    banner = page.locator("#notice")
    expect(banner).to_be_hidden()
    try:
        assert client.put("/v1/admin/notice", json=notice, headers=operator).status_code == 200
        page.clock.run_for(31_000)
        expect(banner).to_be_visible()
        expect(page.locator("#notice-text")).to_have_text(notice["text_id"])
        page.get_by_role("button", name="English").click()
        expect(page.locator("#notice-text")).to_have_text(notice["text_en"])
        expect(banner).to_contain_text("Notice")
    finally:
        assert client.delete("/v1/admin/notice", headers=operator).status_code == 204
    page.clock.run_for(31_000)
    expect(banner).to_be_hidden()


def test_an_outage_answer_looks_for_the_notice_at_once_and_operators_publish_it_from_the_command_line(
    page: Page, stack: RunningStack, client: httpx.Client, corpus: Path
) -> None:
    tokens = ready_user(client, "0812-7000-0008", "+6281270000008", quantity=1)
    # The page's own timers stand still: only the failed stamp can make it look for the notice.
    page.clock.install()
    open_signed_in(page, stack, tokens, "+6281270000008")
    banner = page.locator("#notice")
    expect(banner).to_be_hidden()
    text_id = "Pembubuhan e-meterai terganggu. Bea meterai dapat dibayar dengan SSP."
    published = stack.emeterai("notice", "publish", "--id", text_id, "--en", "Stamping is down; pay by SSP.")
    try:
        assert published.returncode == 0, published.stderr
        assert json.loads(published.stdout)["notice"]["text_id"] == text_id
        # Every replica reads the board within 5 s; this one, once the API shows it.
        wait_until(lambda: client.get("/v1/notice").json()["notice"], timeout_s=30)

        def down(route: Route, request: Request) -> None:
            if request.method != "POST":
                route.continue_()
                return
            problem = {"status": 503, "title": "Service unavailable", "detail": "stamping is down"}
            route.fulfill(status=503, content_type="application/problem+json", body=json.dumps(problem))

        page.route("**/v1/stamps", down)
        page.get_by_label("Dokumen PDF").set_input_files(corpus / "sf-002-libreoffice-writer.pdf")
        expect(page.get_by_role("img", name="Pratinjau halaman 1 dari 1")).to_be_visible()
        page.get_by_label("PIN e-meterai (6 angka)").fill(PIN)
        page.get_by_role("button", name="Bubuhkan e-meterai").click()
        expect(page.locator("#error")).to_have_text("stamping is down")
        expect(banner).to_be_visible()
        expect(page.locator("#notice-text")).to_have_text(text_id)
    finally:
        cleared = stack.emeterai("notice", "clear")
        assert cleared.returncode == 0 and json.loads(cleared.stdout) == {"notice": None}, cleared.stderr
    shown = stack.emeterai("notice", "show")
    assert shown.returncode == 0 and json.loads(shown.stdout) == {"notice": None}
    assert balance(client, tokens)["consumed"] == 0


# ---- the waiting room, with the real admission gate ----------------------------------------------------


class BusyDistributor:
    """A distributor stamping back to back from two threads, so that a stamping slot is always
    taken or claimed; for at most 90 s."""

    def __init__(self, stack: RunningStack, client: httpx.Client, document: bytes) -> None:
        created = stack.emeterai("distributors", "create", "--name", "PT Sibuk")
        assert created.returncode == 0, created.stderr
        credential = json.loads(created.stdout)
        self._channel = grpc.insecure_channel(stack.grpc_address)
        self._api = distributor_service_pb2_grpc.DistributorServiceStub(self._channel)
        token = self._api.IssueToken(
            dpb.IssueTokenRequest(
                client_id=credential["client_id"], client_secret=credential["client_secret"]
            )
        ).access_token
        self._auth = (("authorization", f"Bearer {token}"),)
        order = self._api.CreateOrder(
            dpb.DistributorServiceCreateOrderRequest(quantity=300, idempotency_key="busy"),
            metadata=self._auth,
        ).order
        assert client.post(f"/v1/dev/payments/{order.order_id}/pay").json()["webhook_status"] == 200
        self._document = document
        self._stop = threading.Event()
        self.stamped = threading.Event()
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._stamp, args=(n,), daemon=True) for n in range(2)]

    def __enter__(self) -> BusyDistributor:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
        self._channel.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _stamp(self, worker: int) -> None:
        deadline = time.monotonic() + 90
        count = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            count += 1
            request = dpb.StampDocumentRequest(
                document=self._document,
                placement=common_pb2.StampPlacement(page=1),
                idempotency_key=f"busy-{worker}-{count}",
            )
            try:
                self._api.StampDocument(request, metadata=self._auth, timeout=30)
                self.stamped.set()
            except grpc.RpcError as refused:
                if refused.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    self.errors.append(f"{refused.code()}: {refused.details()}")
                    return


def test_a_stamp_over_capacity_waits_in_the_waiting_room_and_then_goes_through(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser, corpus: Path
) -> None:
    """One stamp at a time and no retail queue (EMETERAI_STAMP_CONCURRENCY_MAX=1,
    EMETERAI_RETAIL_STAMP_QUEUE=0): while a distributor keeps the only slot busy, the page's stamp
    is turned away with a waiting-room ticket, waits, and goes through once the slot is free."""
    limits = {"EMETERAI_STAMP_CONCURRENCY_MAX": "1", "EMETERAI_RETAIL_STAMP_QUEUE": "0"}
    with (
        running_stack(tmp_path_factory.mktemp("busy-stack"), environment=limits) as stack,
        httpx.Client(base_url=stack.http, timeout=60) as client,
    ):
        tokens = ready_user(client, "0812-7000-0006", "+6281270000006", quantity=1)
        context = browser.new_context(viewport={"width": 390, "height": 844})
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        answers: list[Response] = []
        page.on("response", lambda r: answers.append(r) if r.url.endswith("/v1/stamps") else None)
        script_errors: list[str] = []
        page.on("pageerror", lambda error: script_errors.append(str(error)))
        busy_document = (corpus / "sf-009-geotopo-117p.pdf").read_bytes()
        try:
            open_signed_in(page, stack, tokens, "+6281270000006")
            page.get_by_label("Dokumen PDF").set_input_files(corpus / "sf-002-libreoffice-writer.pdf")
            expect(page.get_by_role("img", name="Pratinjau halaman 1 dari 1")).to_be_visible()
            page.get_by_label("PIN e-meterai (6 angka)").fill(PIN)
            with BusyDistributor(stack, client, busy_document) as distributor:
                assert distributor.stamped.wait(timeout=60), distributor.errors
                page.get_by_role("button", name="Bubuhkan e-meterai").click()
                expect(page.locator("#waiting-position")).to_have_text(
                    re.compile(r"Posisi Anda dalam antrean: \d+")
                )
            assert not distributor.errors
            expect(page.locator("#stamp-result")).to_be_visible(timeout=90_000)
            turned_away = [a for a in answers if a.status == 429]
            assert turned_away, "the stamp was never told to wait"
            assert [a.status for a in answers] == [429] * len(turned_away) + [201]
            rooms = [a.json()["waiting_room"] for a in turned_away]
            sent = [a.request for a in answers]
        finally:
            context.close()
        assert not script_errors, script_errors
        assert all(room["ticket"] and room["position"] >= 1 for room in rooms)
        assert len({r.headers["idempotency-key"] for r in sent}) == 1
        assert [r.headers.get("waiting-room-ticket") for r in sent[1:]] == [room["ticket"] for room in rooms]
        assert balance(client, tokens)["consumed"] == 1
