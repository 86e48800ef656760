"""The gateway's periodic sweep of what it keeps past EMETERAI_DOCUMENT_RETENTION_DAYS: stamped
PDFs and finished stamp jobs. Each sweep is one pass over a folder, in a thread, once an hour."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 3600.0


async def sweep_periodically(
    sweeps: Sequence[Callable[[], int]], interval_s: float = SWEEP_INTERVAL_S
) -> None:
    """Run every sweep now and then every interval_s, until cancelled; a failing sweep is logged
    and tried again next time."""
    while True:
        for sweep in sweeps:
            try:
                await asyncio.to_thread(sweep)
            except Exception:
                log.exception("retention sweep failed")
        await asyncio.sleep(interval_s)
