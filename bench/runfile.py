"""The run file: what a surge or chaos run saw, second by second, for bench/report.py to draw.

    {"kind": "surge" | "chaos", "started_at": "<ISO 8601, UTC>", "command": "<argv joined>",
     "result": {"<RESULT name>": number, ...},
     "samples": [{"t": s, "attempted": n, "succeeded": n, "failed": n, "rejected": n,
                  "p50_ms": x | null, "p99_ms": x | null, "queue_depth": n | null}, ...],
     "events": [{"t": s, "kind": "kill" | "restart" | ..., "target": "<service>"}, ...]}

`t` is seconds since the surge or run started; a sample is the window [t, t + 1 s). In a window,
`attempted` counts requests sent, `succeeded`, `rejected` (429, RESOURCE_EXHAUSTED) and `failed`
(any other error, a lost connection included) the answers that came, and p50/p99 are of the
requests that succeeded and finished in it (null when none did). `queue_depth` is the deepest
admission queue reading taken in the window, null when none was taken. A sample may also carry
`queues`, every admission queue's depth by its `queue` label; readers that do not know it ignore it.

bench/surge.py, bench/chaos.py and bench/report.py all go through this module: `write_run` and
`read_run` for the file, `validate_run` for a dict already parsed, `samples_from` to bin answers
into windows.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KINDS = ("surge", "chaos")
KILL = "kill"
RESTART = "restart"
# What an answer was, as a sample counts it.
SUCCEEDED = "succeeded"
REJECTED = "rejected"
FAILED = "failed"
OUTCOMES = (SUCCEEDED, REJECTED, FAILED)
WINDOW_S = 1.0
# Problems listed in one error before the rest are summed up.
MAX_PROBLEMS = 20


class RunFileError(ValueError):
    """A run file that cannot be read, or is not in the shape above; the message lists what is wrong."""


@dataclass(frozen=True)
class Sample:
    t: float
    attempted: int
    succeeded: int
    failed: int
    rejected: int
    p50_ms: float | None
    p99_ms: float | None
    queue_depth: float | None
    # Every admission queue's depth in the window, by queue label; empty when not sampled.
    queues: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    t: float
    kind: str
    target: str


@dataclass(frozen=True)
class Run:
    kind: str
    started_at: str
    command: str
    result: dict[str, float]
    samples: list[Sample]
    events: list[Event]


@dataclass(frozen=True)
class Answer:
    """One request as the load saw it: sent and answered at seconds since the start."""

    sent: float
    answered: float
    outcome: str


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def command_line(argv: Sequence[str]) -> str:
    """argv joined as a shell would read it, with any password in a URL hidden: a report is shared."""
    return shlex.join(re.sub(r"(://[^:/@\s]*:)[^@\s]+@", r"\1***@", arg) for arg in argv)


def http_outcome(status: int) -> str:
    """A HTTP status as a sample counts it; 0 (no answer, the connection lost) is a failure."""
    if 200 <= status < 300:
        return SUCCEEDED
    return REJECTED if status == 429 else FAILED


def grpc_outcome(code: int) -> str:
    """A gRPC status code's value as a sample counts it (8: RESOURCE_EXHAUSTED)."""
    if code == 0:
        return SUCCEEDED
    return REJECTED if code == 8 else FAILED


def samples_from(
    answers: Iterable[Answer],
    depths: Iterable[tuple[float, dict[str, float]]] = (),
    *,
    queue: str | None = None,
    window_s: float = WINDOW_S,
) -> list[Sample]:
    """One sample per window from the first (at t=0) to the last with anything in it.

    depths: (t, {queue label: depth}) readings; `queue` names the one that is each sample's
    queue_depth, the deepest reading of it in the window.
    """
    answers = list(answers)
    depths = list(depths)
    times = [a.sent for a in answers] + [a.answered for a in answers] + [t for t, _ in depths]
    if not times:
        return []
    count = max(0, math.floor(max(times) / window_s)) + 1
    sent = [0] * count
    outcomes = [dict.fromkeys(OUTCOMES, 0) for _ in range(count)]
    latencies: list[list[float]] = [[] for _ in range(count)]
    queues: list[dict[str, float]] = [{} for _ in range(count)]

    def window(t: float) -> int:
        return min(count - 1, max(0, math.floor(t / window_s)))

    for answer in answers:
        sent[window(answer.sent)] += 1
        n = window(answer.answered)
        outcomes[n][answer.outcome] += 1
        if answer.outcome == SUCCEEDED:
            latencies[n].append((answer.answered - answer.sent) * 1000)
    for t, reading in depths:
        deepest = queues[window(t)]
        for name, depth in reading.items():
            deepest[name] = max(deepest.get(name, depth), depth)
    return [
        Sample(
            t=round(n * window_s, 6),
            attempted=sent[n],
            succeeded=outcomes[n][SUCCEEDED],
            failed=outcomes[n][FAILED],
            rejected=outcomes[n][REJECTED],
            p50_ms=_percentile(latencies[n], 0.5),
            p99_ms=_percentile(latencies[n], 0.99),
            queue_depth=queues[n].get(queue) if queue is not None else None,
            queues=queues[n],
        )
        for n in range(count)
    ]


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1], 3)


# The file ------------------------------------------------------------------------------------


def run_to_dict(run: Run) -> dict[str, Any]:
    data = asdict(run)
    for sample in data["samples"]:
        if not sample["queues"]:
            del sample["queues"]
    return data


def write_run(path: Path | str, run: Run) -> None:
    """Write `run` as JSON; checked first, so a file this writes is one read_run accepts."""
    data = run_to_dict(run)
    problems = validate_run(data)
    if problems:
        raise RunFileError(_message(f"not writing {path}", problems))
    Path(path).write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")


def read_run(path: Path | str) -> Run:
    """The run in the file at `path`; RunFileError naming the file and every problem found."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise RunFileError(f"{path}: not JSON: {exc}") from None
    problems = validate_run(data)
    if problems:
        raise RunFileError(_message(f"{path} is not a run file", problems))
    return run_from_dict(data)


def run_from_dict(data: dict[str, Any]) -> Run:
    """A Run from a dict validate_run found no problem in."""
    return Run(
        kind=data["kind"],
        started_at=data["started_at"],
        command=data["command"],
        result={name: float(value) for name, value in data["result"].items()},
        samples=[
            Sample(
                t=float(s["t"]),
                attempted=s["attempted"],
                succeeded=s["succeeded"],
                failed=s["failed"],
                rejected=s["rejected"],
                p50_ms=_float_or_none(s["p50_ms"]),
                p99_ms=_float_or_none(s["p99_ms"]),
                queue_depth=_float_or_none(s["queue_depth"]),
                queues={name: float(depth) for name, depth in s.get("queues", {}).items()},
            )
            for s in data["samples"]
        ],
        events=[Event(float(e["t"]), e["kind"], e["target"]) for e in data["events"]],
    )


def validate_run(data: object) -> list[str]:
    """Every way `data` (a parsed run file) is not in the shape above, as "where: what" lines."""
    if not isinstance(data, dict):
        return [f"the top level: expected an object, got {_kind_of(data)}"]
    problems: list[str] = []
    for name in ("kind", "started_at", "command", "result", "samples", "events"):
        if name not in data:
            problems.append(f"{name}: missing")
    if "kind" in data and data["kind"] not in KINDS:
        problems.append(f"kind: expected one of {', '.join(KINDS)}, got {data['kind']!r}")
    if "started_at" in data:
        problems += _check_time(data["started_at"])
    if "command" in data and not isinstance(data["command"], str):
        problems.append(f"command: expected a string, got {_kind_of(data['command'])}")
    if "result" in data:
        result = data["result"]
        if not isinstance(result, dict):
            problems.append(f"result: expected an object, got {_kind_of(result)}")
        else:
            problems += [
                f"result.{name}: expected a number, got {_kind_of(value)}"
                for name, value in result.items()
                if not _is_number(value)
            ]
    for name, check in (("samples", _check_sample), ("events", _check_event)):
        if name not in data:
            continue
        items = data[name]
        if not isinstance(items, list):
            problems.append(f"{name}: expected a list, got {_kind_of(items)}")
            continue
        previous = -math.inf
        for n, item in enumerate(items):
            where = f"{name}[{n}]"
            if not isinstance(item, dict):
                problems.append(f"{where}: expected an object, got {_kind_of(item)}")
                continue
            found = check(where, item)
            problems += found
            if not found and item["t"] < previous:
                problems.append(f"{where}.t: {item['t']} comes before the one above it ({previous})")
            if not found:
                previous = item["t"]
    return problems


def _check_time(value: object) -> list[str]:
    where = "started_at: expected an ISO 8601 time in UTC, e.g. 2025-01-31T08:00:00+00:00"
    if not isinstance(value, str):
        return [f"{where}, got {_kind_of(value)}"]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return [f"{where}, got {value!r}"]
    if parsed.utcoffset() is None or parsed.utcoffset().total_seconds() != 0:
        return [f"{where}, got {value!r} (not UTC)"]
    return []


def _check_sample(where: str, sample: dict[str, Any]) -> list[str]:
    problems = []
    if "t" not in sample:
        problems.append(f"{where}.t: missing")
    elif not _is_number(sample["t"]):
        problems.append(f"{where}.t: expected a number, got {_kind_of(sample['t'])}")
    for name in ("attempted", "succeeded", "failed", "rejected"):
        if name not in sample:
            problems.append(f"{where}.{name}: missing")
        elif not isinstance(sample[name], int) or isinstance(sample[name], bool) or sample[name] < 0:
            problems.append(f"{where}.{name}: expected a count (0 or more), got {_kind_of(sample[name])}")
    for name in ("p50_ms", "p99_ms", "queue_depth"):
        if name not in sample:
            problems.append(f"{where}.{name}: missing (null when there is no figure)")
        elif sample[name] is not None and (not _is_number(sample[name]) or sample[name] < 0):
            got = _kind_of(sample[name])
            problems.append(f"{where}.{name}: expected a number (0 or more) or null, got {got}")
    queues = sample.get("queues", {})
    if not isinstance(queues, dict) or not all(_is_number(depth) for depth in queues.values()):
        problems.append(f"{where}.queues: expected an object of numbers, got {_kind_of(queues)}")
    return problems


def _check_event(where: str, event: dict[str, Any]) -> list[str]:
    problems = []
    if "t" not in event:
        problems.append(f"{where}.t: missing")
    elif not _is_number(event["t"]):
        problems.append(f"{where}.t: expected a number, got {_kind_of(event['t'])}")
    for name in ("kind", "target"):
        if name not in event:
            problems.append(f"{where}.{name}: missing" + (' ("" for none)' if name == "target" else ""))
        elif not isinstance(event[name], str):
            problems.append(f"{where}.{name}: expected a string, got {_kind_of(event[name])}")
    if isinstance(event.get("kind"), str) and not event["kind"]:
        problems.append(f"{where}.kind: empty")
    return problems


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:60]!r}"
    names = {dict: "an object", list: "a list", bool: "a boolean"}
    return names.get(type(value), repr(value))


def _message(head: str, problems: list[str]) -> str:
    shown = problems[:MAX_PROBLEMS]
    more = len(problems) - len(shown)
    tail = [f"...and {more} more"] if more else []
    return head + ":\n  " + "\n  ".join(shown + tail)
