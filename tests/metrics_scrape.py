"""Reading a service's /metrics over HTTP in tests, as Prometheus would."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    text: str
    samples: tuple[Sample, ...]

    def value(self, name: str, **labels: str) -> float | None:
        """The sample `name` whose labels include `labels`; None when there is none. Several
        matching samples must not be: the labels given must pick one series."""
        found = [s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
        return found[0] if found else None

    def series(self, name: str) -> list[dict[str, str]]:
        """The label sets of every series of `name`."""
        return [dict(s.labels) for s in self.samples if s.name == name]


def scrape(port: int, host: str = "127.0.0.1") -> Scrape:
    answer = httpx.get(f"http://{host}:{port}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = tuple(s for family in text_string_to_metric_families(answer.text) for s in family.samples)
    return Scrape(answer.text, samples)
