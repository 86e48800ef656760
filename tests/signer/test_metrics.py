"""The signer's metrics, scraped over HTTP while its worker processes stamp real PDFs."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from services.common.metrics import MetricsServer
from services.signer.metrics import WORKERS
from services.signer.pki import DevPki
from services.signer.placement import Placement
from services.signer.workers import StampJob, WorkerPool
from tests.metrics_scrape import scrape

from .conftest import SERIAL
from .test_servicer import corpus_pdf, worker_config


async def _gauges(port: int) -> tuple[float | None, float | None]:
    scraped = await asyncio.to_thread(scrape, port)
    return scraped.value("emeterai_signer_in_flight"), scraped.value("emeterai_signer_workers_idle")


async def test_documents_in_work_and_waiting_count_as_in_flight_until_answered(dev_pki: DevPki) -> None:
    document = corpus_pdf()
    pool = WorkerPool(worker_config(dev_pki), size=2, time_limit_s=60)
    await pool.start()
    metrics = MetricsServer.start("127.0.0.1:0")
    WORKERS.attach(pool)
    try:
        assert await _gauges(metrics.port) == (0, 2)
        # The workers are held still, so two documents stay on them and the third waits for one.
        for process in pool.workers:
            os.kill(process.pid, signal.SIGSTOP)
        try:
            stamps = [
                asyncio.ensure_future(
                    pool.stamp(StampJob(document, serial=f"{SERIAL[:-1]}{n}", placement=Placement()))
                )
                for n in range(3)
            ]
            deadline = time.monotonic() + 10
            while await _gauges(metrics.port) != (3, 0):
                assert time.monotonic() < deadline, await _gauges(metrics.port)
                await asyncio.sleep(0.05)
        finally:
            for process in pool.workers:
                os.kill(process.pid, signal.SIGCONT)
        results = await asyncio.gather(*stamps)
        assert all(r.stamped_document.startswith(document) for r in results)
        assert await _gauges(metrics.port) == (0, 2)
    finally:
        metrics.stop()
        await pool.close()
