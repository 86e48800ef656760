"""The signer's metrics: documents in the front process and workers free, read when Prometheus
scrapes. See docs/metrics.md."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from services.common.metrics import Probe
from services.signer.workers import WorkerPool


def read_workers(pool: WorkerPool | None) -> list[Metric]:
    in_flight = GaugeMetricFamily(
        "emeterai_signer_in_flight",
        "Documents this signer has been given and not yet answered: on a worker, or waiting for one.",
    )
    idle = GaugeMetricFamily(
        "emeterai_signer_workers_idle", "Stamping worker processes waiting for a document."
    )
    if pool is not None:
        in_flight.add_metric([], pool.in_flight)
        idle.add_metric([], pool.idle)
    return [in_flight, idle]


WORKERS = Probe(read_workers)
