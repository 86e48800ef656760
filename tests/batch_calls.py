"""Counting the batch calls a batching client makes, on the generated stub it wraps."""

from __future__ import annotations

from typing import Any


def count_batches(stub: Any, method: str, items: str) -> list[int]:
    """Wrap the stub's `method` so every call records how many `items` its request carried; the
    list returned fills in as calls are made."""
    sizes: list[int] = []
    call = getattr(stub, method)

    def counted(request: Any, **kwargs: Any) -> Any:
        sizes.append(len(getattr(request, items)))
        return call(request, **kwargs)

    setattr(stub, method, counted)
    return sizes
