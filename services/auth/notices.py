"""Degraded-mode notices: what operators tell every user while something is down, for instance
that the stamp duty may be paid with a tax payment slip (SSP) while stamping is unavailable.

One notice is current at a time: publishing replaces it, clearing ends it. Every notice stays on
record with who published and cleared it and when.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from services.auth.accounts import clean_text
from services.auth.model import Clock, utc_now
from services.auth.store import notices

log = logging.getLogger(__name__)

MAX_TEXT = 1000


@dataclass(frozen=True)
class Notice:
    text_id: str
    text_en: str
    published_at: datetime


class Notices:
    def __init__(self, engine: Engine, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    def publish(self, text_id: str, text_en: str, published_by: str) -> Notice:
        """Make this the notice every user sees, in Indonesian and English, replacing any other."""
        notice = Notice(
            clean_text(text_id, "the Indonesian text", MAX_TEXT),
            clean_text(text_en, "the English text", MAX_TEXT),
            self._clock(),
        )
        with self._engine.begin() as conn:
            conn.execute(
                update(notices).where(notices.c.cleared_at.is_(None)).values(cleared_at=notice.published_at)
            )
            conn.execute(
                insert(notices).values(
                    text_id=notice.text_id,
                    text_en=notice.text_en,
                    published_by=published_by,
                    published_at=notice.published_at,
                )
            )
        log.info("notice published", extra={"operator": published_by})
        return notice

    def clear(self, cleared_by: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(notices).where(notices.c.cleared_at.is_(None)).values(cleared_at=self._clock())
            )
        log.info("notice cleared", extra={"operator": cleared_by})

    def current(self) -> Notice | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(notices.c.text_id, notices.c.text_en, notices.c.published_at)
                .where(notices.c.cleared_at.is_(None))
                .order_by(notices.c.id.desc())
                .limit(1)
            ).one_or_none()
        return None if row is None else Notice(row.text_id, row.text_en, row.published_at)
