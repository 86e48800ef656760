"""The checks of bench/chaos.py once the chaos is over and every hold has outlived its TTL.

Each figure is counted from two sides, what the clients were answered and the ledger itself
(read-only SQL on the run's throwaway database, and the books every owner sees through the API):

- lost_quota: per account, |paid orders - (available + held + consumed + refunded)|, |purchased -
  paid orders|, held (anything still held after the TTL), |consumed - committed holds|; a stamp a
  client was answered that the ledger has not committed under its id and serial; a committed hold
  under a key no client sent, or one the client gave up on that its owner cannot download; a
  purchase the client saw paid that the ledger has not; and every discrepancy `emeterai audit
  reconcile` names.
- double_charges: more than one committed hold for one document across all its keys; a repeated
  key answered with another stamp; more than one order for one order key; more than one hold or
  order per (account, key) in the ledger; an order paid by more than one applied payment; a
  payment not applied to its order and not sent back.
- reused_serials: a serial on more than one hold in the ledger, in the clients' answers, or in
  the downloaded PDFs.
- invalid_pdfs: a committed stamp whose PDF, downloaded by its owner, is not the document the
  ledger bound (SHA-256), does not start with the original bytes, or whose e-meterai signature
  poppler's pdfsig does not find valid and covering the whole document, or names another serial.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from chaos_ops import OrderOp, Record, StampOp
from sqlalchemy import create_engine, select

from services.quota import audit
from services.quota.schema import holds, orders, payments, refunds

PAID = ("paid", "partially_refunded", "refunded")
FIELD = re.compile(r"Signature Field Name: e-meterai (\S+)")


class Owner(Protocol):
    account_id: str

    async def balance(self) -> dict[str, int]: ...

    async def download(self, stamp_id: str) -> bytes | None: ...


@dataclass
class Findings:
    lost_quota: int = 0
    double_charges: int = 0
    reused_serials: int = 0
    invalid_pdfs: int = 0
    # Operations, as the RESULT line counts them.
    ops: int = 0
    succeeded: int = 0
    failed_cleanly: int = 0
    # Stamps a client gave up on that were committed and that its owner downloads from its history.
    found_in_history: int = 0
    pdfs_checked: int = 0
    # What the clients were answered that was not a clear error.
    unclear: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def found(self, figure: str, count: int, why: str) -> None:
        if count:
            setattr(self, figure, getattr(self, figure) + count)
            self.problems.append(f"{figure} +{count}: {why}")


@dataclass(frozen=True)
class Books:
    holds: list[Any]
    orders: list[Any]
    payments: list[Any]
    refunded_payments: set[str]


def read_ledger(database_url: str) -> Books:
    """The ledger's holds, orders, payments and refunds, as of one moment."""
    engine = create_engine(database_url)
    try:
        with audit.snapshot(engine) as conn:
            return Books(
                holds=list(conn.execute(select(holds))),
                orders=list(conn.execute(select(orders))),
                payments=list(conn.execute(select(payments))),
                refunded_payments={row.payment_id for row in conn.execute(select(refunds.c.payment_id))},
            )
    finally:
        engine.dispose()


async def check(
    record: Record,
    owners: list[Owner],
    database_url: str,
    documents: dict[str, bytes],
    *,
    max_pdfs: int,
    rng: random.Random,
) -> Findings:
    findings = Findings()
    books = await asyncio.to_thread(read_ledger, database_url)
    committed = [h for h in books.holds if h.status == "committed"]
    by_key: dict[tuple[str, str], StampOp] = {(op.owner, key): op for op in record.stamps for key in op.keys}
    await check_books(findings, books, owners, committed)
    given_up = check_stamps(findings, record.stamps, books, committed, by_key)
    check_orders(findings, record.orders, books)
    check_serials(findings, record.stamps, books)
    owner_of = {owner.account_id: owner for owner in owners}
    found = await check_pdfs(findings, committed, owner_of, documents, given_up, by_key, max_pdfs, rng)
    for op in given_up:
        if op in found:
            findings.found_in_history += 1
        else:
            findings.found("lost_quota", 1, f"{op.channel} document charged, not downloadable: {op.keys}")
    count_ops(findings, record, books, found)
    for name in ("verify", "reconcile"):
        problems = audit_check(name, database_url)
        if name == "reconcile":
            findings.found("lost_quota", len(problems), "reconcile: " + "; ".join(problems[:5]))
        elif problems:
            findings.problems.append("audit verify: " + "; ".join(problems[:5]))
            findings.found("lost_quota", len(problems), "the audit chain is broken")
    return findings


async def check_books(findings: Findings, books: Books, owners: list[Owner], committed: list[Any]) -> None:
    """purchased (paid orders) = available + held + consumed + refunded, nothing held after the
    TTL, consumed = committed holds: for every account the load used."""
    paid: Counter[str] = Counter()
    for order in books.orders:
        if order.status in PAID:
            paid[order.account_id] += order.quantity
    stamped = Counter(h.account_id for h in committed)
    for owner in owners:
        seen = await owner.balance()
        account, bought = owner.account_id, paid[owner.account_id]
        total = seen["available"] + seen["held"] + seen["consumed"] + seen["refunded"]
        findings.found("lost_quota", abs(bought - total), f"{account}: paid {bought}, books hold {total}")
        findings.found("lost_quota", abs(seen["purchased"] - bought), f"{account}: purchased != paid orders")
        findings.found("lost_quota", seen["held"], f"{account}: still held after the TTL")
        findings.found(
            "lost_quota",
            abs(seen["consumed"] - stamped[account]),
            f"{account}: consumed {seen['consumed']}, committed holds {stamped[account]}",
        )


def check_stamps(
    findings: Findings,
    ops: list[StampOp],
    books: Books,
    committed: list[Any],
    by_key: dict[tuple[str, str], StampOp],
) -> list[StampOp]:
    """Every stamp a client was answered is committed as answered; every committed hold is one a
    client asked for, once per document. Returns the documents a client gave up on that were
    committed anyway (each must then be downloadable from its owner's history)."""
    holds_by_id = {h.hold_id: h for h in books.holds}
    charged: dict[StampOp, list[Any]] = defaultdict(list)
    for hold in committed:
        op = by_key.get((hold.account_id, hold.idempotency_key))
        if op is None:
            findings.found("lost_quota", 1, f"committed hold {hold.hold_id} under a key no client sent")
            continue
        charged[op].append(hold)
    given_up = []
    for op in ops:
        mine = charged.get(op, [])
        findings.found(
            "double_charges", max(0, len(mine) - 1), f"one document, {len(mine)} stamps: {op.keys}"
        )
        if op.succeeded:
            hold = holds_by_id.get(op.stamp_id)
            if hold is None or hold.status != "committed" or hold.serial != op.serial:
                findings.found("lost_quota", 1, f"answered stamp {op.stamp_id} is not committed as answered")
        elif mine:
            given_up.append(op)
        for stamp_id, serial in op.replays:
            if (stamp_id, serial) != (op.stamp_id, op.serial):
                findings.found("double_charges", 1, f"key {op.keys[-1]} answered with another stamp")
    per_key = Counter((h.account_id, h.idempotency_key) for h in books.holds)
    findings.found("double_charges", sum(n - 1 for n in per_key.values() if n > 1), "holds sharing a key")
    return given_up


def check_orders(findings: Findings, ops: list[OrderOp], books: Books) -> None:
    """One order per key, paid at most once; every payment that bought nothing sent back; and
    every purchase a client saw paid is paid in the ledger."""
    status = {o.order_id: o.status for o in books.orders}
    for op in ops:
        findings.found("double_charges", max(0, len(op.order_ids) - 1), f"order key {op.key}: {op.order_ids}")
        if op.paid and not any(status.get(order_id) in PAID for order_id in op.order_ids):
            findings.found("lost_quota", op.quantity, f"order key {op.key} seen paid, not paid in the ledger")
    per_key = Counter((o.account_id, o.idempotency_key) for o in books.orders)
    findings.found("double_charges", sum(n - 1 for n in per_key.values() if n > 1), "orders sharing a key")
    applied = Counter(p.order_id for p in books.payments if p.applied)
    findings.found("double_charges", sum(n - 1 for n in applied.values() if n > 1), "orders paid twice")
    kept = [
        p.payment_id for p in books.payments if not p.applied and p.payment_id not in books.refunded_payments
    ]
    findings.found("double_charges", len(kept), f"payments neither applied nor sent back: {kept[:5]}")


def check_serials(findings: Findings, ops: list[StampOp], books: Books) -> None:
    per_serial = Counter(h.serial for h in books.holds)
    findings.found("reused_serials", sum(n - 1 for n in per_serial.values() if n > 1), "serials on two holds")
    answered: dict[str, set[str]] = defaultdict(set)
    for op in ops:
        if op.succeeded:
            answered[op.serial].add(op.stamp_id)
        for stamp_id, serial in op.replays:
            answered[serial].add(stamp_id)
    findings.found(
        "reused_serials",
        sum(len(ids) - 1 for ids in answered.values() if len(ids) > 1),
        "a serial answered for two stamps",
    )


async def check_pdfs(
    findings: Findings,
    committed: list[Any],
    owner_of: dict[str, Owner],
    documents: dict[str, bytes],
    given_up: list[StampOp],
    by_key: dict[tuple[str, str], StampOp],
    max_pdfs: int,
    rng: random.Random,
) -> set[StampOp]:
    """Download and validate committed stamps: every one up to max_pdfs, else every one whose
    document took retries or a repeat and a seeded sample of the rest. Returns the given-up
    documents whose stamp downloaded."""
    originals = {hashlib.sha256(content).digest(): content for content in documents.values()}
    gave_up = set(given_up)

    def eventful(hold: Any) -> bool:
        op = by_key.get((hold.account_id, hold.idempotency_key))
        return op is None or op in gave_up or len(op.keys) > 1 or bool(op.replays)

    chosen = [h for h in committed if eventful(h)]
    rest = [h for h in committed if not eventful(h)]
    chosen += rng.sample(rest, min(len(rest), max(0, max_pdfs - len(chosen))))
    findings.pdfs_checked = len(chosen)
    serial_seen: Counter[str] = Counter()
    downloaded: set[StampOp] = set()
    slots = asyncio.Semaphore(2)

    async def one(hold: Any, directory: Path) -> None:
        owner = owner_of.get(hold.account_id)
        pdf = await owner.download(hold.hold_id) if owner is not None else None
        if pdf is None:
            findings.found("invalid_pdfs", 1, f"{hold.hold_id}: its owner cannot download it")
            return
        op = by_key.get((hold.account_id, hold.idempotency_key))
        if op is not None and op in gave_up:
            downloaded.add(op)
        answered = op.answered_sha256 if op is not None and op.stamp_id == hold.hold_id else b""
        if answered and answered != hold.stamped_sha256:
            findings.found("invalid_pdfs", 1, f"{hold.hold_id}: the answered PDF is not the one bound")
        async with slots:
            problem, serial = await pdf_problem(pdf, hold, originals, directory / f"{hold.hold_id}.pdf")
        if serial:
            serial_seen[serial] += 1
        if problem:
            findings.found("invalid_pdfs", 1, f"{hold.hold_id}: {problem}")

    with tempfile.TemporaryDirectory(prefix="emeterai-chaos-pdfs-") as directory:
        for first in range(0, len(chosen), 50):
            await asyncio.gather(*(one(hold, Path(directory)) for hold in chosen[first : first + 50]))
    findings.found(
        "reused_serials", sum(n - 1 for n in serial_seen.values() if n > 1), "a serial in two stamped PDFs"
    )
    return downloaded


async def pdf_problem(pdf: bytes, hold: Any, originals: dict[bytes, bytes], path: Path) -> tuple[str, str]:
    """(what is wrong with one stamped PDF or "", the serial its e-meterai signature names)."""
    if hashlib.sha256(pdf).digest() != hold.stamped_sha256:
        return "not the stamped document the ledger bound to its serial", ""
    original = originals.get(hold.document_sha256)
    if original is None or not pdf.startswith(original):
        return "the original document is not an untouched prefix", ""
    path.write_bytes(pdf)
    process = await asyncio.create_subprocess_exec(
        "pdfsig", str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return "pdfsig did not finish in 60 s", ""
    finally:
        path.unlink(missing_ok=True)
    report = output.decode(errors="replace")
    ours = [b for b in re.split(r"^Signature #\d+:$", report, flags=re.MULTILINE)[1:] if FIELD.search(b)]
    if process.returncode != 0 or len(ours) != 1:
        return f"pdfsig exit {process.returncode}, {len(ours)} e-meterai signatures", ""
    serial = FIELD.search(ours[0]).group(1)
    if serial != hold.serial:
        return f"the PDF names serial {serial}, the ledger {hold.serial}", serial
    if "Signature Validation: Signature is Valid." not in ours[0]:
        return "pdfsig: the signature is not valid", serial
    if "Total document signed" not in ours[0]:
        return "pdfsig: the signature does not cover the whole document", serial
    return "", serial


def count_ops(findings: Findings, record: Record, books: Books, found: set[StampOp]) -> None:
    """succeeded: the client got its stamp (in the answer, or from its history after giving up)
    or saw its purchase paid (or finds it paid); failed_cleanly: a clear error or a lost
    connection, and the ledger shows it cost nothing; anything else is neither."""
    committed_keys = {(h.account_id, h.idempotency_key) for h in books.holds if h.status == "committed"}
    paid_orders = {o.order_id for o in books.orders if o.status in PAID}
    for op in record.stamps:
        findings.ops += 1
        charged = any((op.owner, key) in committed_keys for key in op.keys)
        if op.succeeded or op in found:
            findings.succeeded += 1
        elif op.unclear:
            findings.unclear.append(f"stamp {op.keys[-1]}: {op.unclear}")
        elif not charged:
            findings.failed_cleanly += 1
    for order in record.orders:
        findings.ops += 1
        if order.paid or order.order_ids & paid_orders:
            findings.succeeded += 1
        elif order.unclear:
            findings.unclear.append(f"order {order.key}: {order.unclear}")
        else:
            findings.failed_cleanly += 1
    for error in record.sign_ins:
        findings.ops += 1
        if not error:
            findings.succeeded += 1
        elif error.isdigit() and int(error) >= 500 and error != "503":
            findings.unclear.append(f"sign-in: HTTP {error}")
        else:
            findings.failed_cleanly += 1


def audit_check(check: str, database_url: str) -> list[str]:
    """The discrepancies `emeterai audit <check>` names (its exit code must be 0 when none)."""
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "emeterai"),
            "audit",
            check,
            "--database-url",
            database_url,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        problems = list(json.loads(done.stdout.strip().splitlines()[-1])["problems"])
    except (ValueError, IndexError, KeyError):
        problems = [f"no answer: {done.stderr.strip()[-300:]}"]
    print(f"emeterai audit {check}: exit {done.returncode}, {len(problems)} discrepancies")
    if done.returncode != 0 and not problems:
        problems = [f"exit {done.returncode}: {done.stderr.strip()[-300:]}"]
    return problems
