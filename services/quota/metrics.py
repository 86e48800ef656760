"""The quota service's metrics: the holds still reserved, read from the ledger when Prometheus
scrapes (at most every few seconds), and the books' own reconcile check, run periodically.

See docs/metrics.md for what an operator reads from each.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from services.common.metrics import Probe
from services.quota.ledger import Ledger

log = logging.getLogger(__name__)

# Scrapes from several Prometheus replicas, or a short interval, cost one query per this long.
HOLDS_READ_EVERY_S = 5.0
# The reconcile reads every book, order and serial: once a minute is cheap enough to run always
# and quick enough for an alert.
RECONCILE_EVERY_S = 60.0

RECONCILE_DISCREPANCIES = Gauge(
    "emeterai_ledger_reconcile_discrepancies",
    "Discrepancies the last reconcile of the books found (as `emeterai audit reconcile`); "
    "NaN until the first one has run.",
)
RECONCILE_LAST_RUN = Gauge(
    "emeterai_ledger_reconcile_last_run_timestamp_seconds",
    "When the last reconcile of the books finished, in Unix seconds; 0 until one has.",
)
RECONCILE_DISCREPANCIES.set(float("nan"))


class OutstandingHolds:
    """The ledger's reserved holds as of at most `read_every_s` ago, read from the scrape's thread."""

    def __init__(
        self,
        ledger: Ledger,
        read_every_s: float = HOLDS_READ_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._read_every_s = read_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._last = (0, 0.0)

    def read(self) -> tuple[int, float]:
        """(holds reserved, age of the oldest in seconds)."""
        with self._lock:
            if self._clock() - self._read_at >= self._read_every_s:
                self._last = self._ledger.outstanding_holds()
                self._read_at = self._clock()
            return self._last


def read_holds(holds: OutstandingHolds | None) -> list[Metric]:
    outstanding = GaugeMetricFamily(
        "emeterai_holds_outstanding", "Holds reserved and not yet committed or released."
    )
    oldest = GaugeMetricFamily(
        "emeterai_oldest_hold_age_seconds", "Age of the oldest hold still reserved; 0 when there is none."
    )
    if holds is not None:
        count, oldest_age_s = holds.read()
        outstanding.add_metric([], count)
        oldest.add_metric([], oldest_age_s)
    return [outstanding, oldest]


HOLDS = Probe(read_holds)


async def reconcile_periodically(ledger: Ledger, every_s: float = RECONCILE_EVERY_S) -> None:
    """Reconcile the books now and every `every_s`, in a thread, for as long as we run; each result
    goes to the reconcile gauges. A reconcile that fails leaves them as they were, so the last-run
    time grows stale and says so."""
    while True:
        try:
            problems = await asyncio.to_thread(ledger.reconcile)
        except Exception:
            log.exception("reconcile of the books failed; trying again later")
        else:
            RECONCILE_DISCREPANCIES.set(len(problems))
            RECONCILE_LAST_RUN.set_to_current_time()
            if problems:
                log.error(
                    "the books do not reconcile",
                    extra={"discrepancies": len(problems), "first": problems[:10]},
                )
        await asyncio.sleep(every_s)
