"""Surge and chaos runs as a static HTML page with PNG charts.

    .venv/bin/python bench/report.py RUN.json [RUN.json ...] -o report/

Each RUN.json is a run file (bench/runfile.py), as `surge.py --json-out` and `chaos.py --json-out`
write one. The page, report/index.html, shows for every run its command, when it started, its
RESULT figures and its events, and four charts over the run's timeline: throughput, latency
percentiles, admitted against rejected and failed, and the admission queue's depth. Kills and
restarts are vertical lines on every chart, labelled with the service. The PNGs sit next to the
page; it loads nothing else.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runfile import KILL, RESTART, WINDOW_S, Run, RunFileError, Sample, read_run

# How each kind of event is drawn; any other kind is drawn as OTHER_EVENT.
EVENT_STYLES = {
    KILL: {"color": "#c0392b", "linestyle": "-", "linewidth": 1.6},
    RESTART: {"color": "#27ae60", "linestyle": "--", "linewidth": 1.4},
}
OTHER_EVENT = {"color": "#7f8c8d", "linestyle": ":", "linewidth": 1.2}
FIGURE_SIZE = (9.0, 3.2)
DPI = 100


@dataclass(frozen=True)
class Chart:
    title: str
    file: str | None
    # Why there is no chart, when there is none.
    note: str = ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN.json", help="run files to show")
    parser.add_argument("-o", "--out", type=Path, default=Path("report"), help="folder for the page")
    args = parser.parse_args()
    try:
        runs = [(path, read_run(path)) for path in args.runs]
    except RunFileError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    page = write_report(runs, args.out)
    print(f"report: {page} ({len(runs)} run{'s' * (len(runs) != 1)})")


def write_report(runs: list[tuple[Path, Run]], out: Path) -> Path:
    """Draw every run's charts into `out` and write out/index.html; returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    used: set[str] = set()
    for path, run in runs:
        name = _unique(_slug(path.stem), used)
        sections.append(_section(name, path, run, draw_charts(run, out, name)))
    page = out / "index.html"
    page.write_text(_page(runs, sections))
    return page


def draw_charts(run: Run, out: Path, name: str) -> list[Chart]:
    """The run's four timeline charts as out/<name>-<chart>.png."""
    if not run.samples:
        return [Chart("Timeline", None, "This run has no samples: nothing to draw over time.")]
    charts = [_draw(run, out / f"{name}-throughput.png", "Throughput", "requests/s", _throughput)]
    latency = "Latency of successful requests"
    if any(s.p50_ms is not None or s.p99_ms is not None for s in run.samples):
        charts.append(_draw(run, out / f"{name}-latency.png", latency, "ms", _latency))
    else:
        charts.append(Chart(latency, None, "No request succeeded in this run: no latency to draw."))
    charts.append(
        _draw(run, out / f"{name}-outcomes.png", "Admitted, rejected and failed", "answers/s", _outcomes)
    )
    queues = sorted({queue for s in run.samples for queue in s.queues})
    if any(s.queue_depth is not None for s in run.samples) or queues:
        charts.append(_draw(run, out / f"{name}-queue.png", "Admission queue depth", "requests", _queue))
    else:
        charts.append(Chart("Admission queue depth", None, "No queue depth was read in this run."))
    return charts


def _draw(run: Run, path: Path, title: str, unit: str, plot: Callable[[Axes, Run], None]) -> Chart:
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    plot(axes, run)
    _mark_events(axes, run)
    axes.set_title(title, loc="left", fontsize=11)
    axes.set_xlabel("seconds since the start")
    axes.set_ylabel(unit)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    figure.savefig(path, format="png")
    return Chart(title, path.name)


def _times(run: Run) -> list[float]:
    # A window's figure drawn at its middle, so a line lines up with the events in the window.
    return [s.t + WINDOW_S / 2 for s in run.samples]


def _per_s(run: Run, count: Callable[[Sample], int]) -> list[float]:
    return [count(s) / WINDOW_S for s in run.samples]


def _gaps(values: list[float | None]) -> list[float]:
    # NaN leaves a gap in the line where a window has no figure, rather than a false zero.
    return [math.nan if value is None else value for value in values]


def _throughput(axes: Axes, run: Run) -> None:
    t = _times(run)
    axes.plot(t, _per_s(run, lambda s: s.attempted), label="attempted/s", color="#2c3e50")
    axes.plot(t, _per_s(run, lambda s: s.succeeded), label="succeeded/s", color="#2980b9")


def _latency(axes: Axes, run: Run) -> None:
    t = _times(run)
    axes.plot(t, _gaps([s.p50_ms for s in run.samples]), label="p50", color="#2980b9", marker=".")
    axes.plot(t, _gaps([s.p99_ms for s in run.samples]), label="p99", color="#8e44ad", marker=".")


def _outcomes(axes: Axes, run: Run) -> None:
    # Steps over each whole window: one more edge at the end of the last, at its level.
    edges = [s.t for s in run.samples] + [run.samples[-1].t + WINDOW_S]

    def level(count: Callable[[Sample], int]) -> list[float]:
        values = _per_s(run, count)
        return [*values, values[-1]]

    axes.stackplot(
        edges,
        level(lambda s: s.succeeded),
        level(lambda s: s.rejected),
        level(lambda s: s.failed),
        labels=["admitted (succeeded)", "rejected (429, RESOURCE_EXHAUSTED)", "failed (other errors)"],
        colors=["#2980b9", "#f39c12", "#c0392b"],
        step="post",
        alpha=0.85,
    )


def _queue(axes: Axes, run: Run) -> None:
    t = _times(run)
    if any(s.queue_depth is not None for s in run.samples):
        depth = _gaps([s.queue_depth for s in run.samples])
        axes.plot(t, depth, label="queue depth", color="#2c3e50", linewidth=2, marker=".")
    shown = [s.queue_depth for s in run.samples]
    for queue in sorted({queue for s in run.samples for queue in s.queues}):
        depths = [s.queues.get(queue) for s in run.samples]
        # A queue that stayed empty, or is the one drawn as queue depth, would only hide the others.
        if depths != shown and any(depths):
            axes.plot(t, _gaps(depths), label=queue, linewidth=1)


def _mark_events(axes: Axes, run: Run) -> None:
    labelled: set[str] = set()
    for event in run.events:
        style = EVENT_STYLES.get(event.kind, OTHER_EVENT)
        label = _event_label(event.kind, event.target)
        axes.axvline(event.t, **style, label=None if label in labelled else label)
        labelled.add(label)
        # Written along the line, so a chart read alone says what was killed or restarted.
        text = event.target if event.kind in EVENT_STYLES and event.target else event.kind
        axes.text(
            event.t,
            0.98,
            _plain(f" {text}"),
            transform=axes.get_xaxis_transform(),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color=style["color"],
        )


def _event_label(kind: str, target: str) -> str:
    return _plain(f"{kind}: {target}" if target else kind)


def _plain(text: str) -> str:
    # Matplotlib reads text between two $ as mathematics.
    return text.replace("$", r"\$")


# The page ------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f5f5f5; padding: 0.6em; white-space: pre-wrap; word-break: break-all; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
.note { color: #666; font-style: italic; }
tr.kill td { color: #c0392b; } tr.restart td { color: #27ae60; }
"""


def _page(runs: list[tuple[Path, Run]], sections: list[str]) -> str:
    listed = "".join(
        f'<li><a href="#run-{n}">{_e(path.name)}</a>: {_e(run.kind)}, {_e(run.started_at)}</li>'
        for n, (path, run) in enumerate(runs)
    )
    body = "\n".join(f'<section id="run-{n}">{section}</section>' for n, section in enumerate(sections))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>e-meterai benchmark runs</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n"
        "<h1>e-meterai benchmark runs</h1>\n"
        f"<ul>{listed}</ul>\n{body}\n</body>\n</html>\n"
    )


def _section(name: str, path: Path, run: Run, charts: list[Chart]) -> str:
    parts = [
        f"<h2>{_e(run.kind)}: {_e(path.name)}</h2>",
        f"<p>Started {_e(run.started_at)}; {len(run.samples)} one-second samples.</p>",
        f"<pre><code>{_e(run.command)}</code></pre>",
        "<table><tr><th>RESULT</th><th>value</th></tr>",
        *(
            f'<tr><td>{_e(key)}</td><td class="number">{_e(_number(value))}</td></tr>'
            for key, value in run.result.items()
        ),
        "</table>",
    ]
    if run.events:
        parts += [
            "<table><tr><th>t (s)</th><th>event</th><th>target</th></tr>",
            *(
                f'<tr class="{_e(_css(event.kind))}"><td class="number">{event.t:.1f}</td>'
                f"<td>{_e(event.kind)}</td><td>{_e(event.target)}</td></tr>"
                for event in run.events
            ),
            "</table>",
        ]
    else:
        parts.append('<p class="note">No events in this run.</p>')
    for chart in charts:
        if chart.file is None:
            parts.append(f'<h3>{_e(chart.title)}</h3><p class="note">{_e(chart.note)}</p>')
        else:
            alt = f"{chart.title}, {run.kind} run {path.name}"
            parts.append(f'<img src="{_e(chart.file)}" alt="{_e(alt)}">')
    return "\n".join(parts)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _number(value: float) -> str:
    return f"{value:.0f}" if value.is_integer() else f"{value:.2f}"


def _css(kind: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", kind.lower())


def _slug(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "run"


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{name}-{n}"
    used.add(candidate)
    return candidate


if __name__ == "__main__":
    main()
