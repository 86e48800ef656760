"""Conversions between domain values and protobuf's well-known types, written once."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp


def to_timestamp(moment: datetime | None) -> Timestamp | None:
    """A Timestamp for an aware datetime; None stays None, so the proto field stays unset."""
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
