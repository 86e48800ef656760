"""bench/report.py draws a run file's charts into a page; bench/runfile.py reads only well-formed files.

The page is checked as a reader meets it: every image it points to is a PNG beside it, kills are
named, and text from the run file cannot become markup.
"""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.runfile import (
    FAILED,
    REJECTED,
    SUCCEEDED,
    Answer,
    Event,
    Run,
    RunFileError,
    Sample,
    command_line,
    read_run,
    run_to_dict,
    samples_from,
    write_run,
)
from tests.conftest import ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def a_run(*, queue_depth: bool = True, command: str = "bench/chaos.py --quick") -> Run:
    samples = [
        Sample(
            t=float(n),
            attempted=40,
            succeeded=0 if 5 <= n < 8 else 25,
            failed=12 if 5 <= n < 8 else 0,
            rejected=15,
            p50_ms=None if 5 <= n < 8 else 120.0 + n,
            p99_ms=None if 5 <= n < 8 else 400.0 + 10 * n,
            queue_depth=float(n % 6) if queue_depth else None,
        )
        for n in range(15)
    ]
    events = [Event(5.0, "kill", "signer-1"), Event(8.0, "restart", "signer-1")]
    return Run(
        "chaos", "2025-01-31T08:00:00+00:00", command, {"stamps_lost": 0.0, "p99_ms": 612.5}, samples, events
    )


def report(out: Path, *runs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "report.py"), *map(str, runs), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_page_shows_every_chart_as_a_png_beside_it_with_the_kills_named(tmp_path: Path) -> None:
    write_run(tmp_path / "chaos-run.json", a_run(command="bench/chaos.py --note '<script>alert(1)</script>'"))
    done = report(tmp_path / "report", tmp_path / "chaos-run.json")
    assert done.returncode == 0, done.stdout + done.stderr

    page = (tmp_path / "report" / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 4, page
    for image in images:
        drawn = (tmp_path / "report" / image).read_bytes()
        assert drawn.startswith(PNG_SIGNATURE), image
        assert len(drawn) > 5_000, f"{image} is {len(drawn)} bytes: next to nothing drawn"
    assert re.search(r"<td>kill</td><td>signer-1</td>", page), page
    assert re.search(r"<td>restart</td><td>signer-1</td>", page), page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "stamps_lost" in page and "612.50" in page
    assert "2025-01-31T08:00:00+00:00" in page


def test_a_run_without_queue_readings_gets_a_note_instead_of_an_empty_chart(tmp_path: Path) -> None:
    write_run(tmp_path / "run.json", a_run(queue_depth=False))
    done = report(tmp_path / "report", tmp_path / "run.json")
    assert done.returncode == 0, done.stdout + done.stderr

    page = (tmp_path / "report" / "index.html").read_text()
    assert len(re.findall(r"<img ", page)) == 3
    assert "No queue depth was read in this run." in page
    assert not (tmp_path / "report" / "run-queue.png").exists()


def test_the_report_names_the_bad_file_and_what_is_wrong_with_it(tmp_path: Path) -> None:
    data = run_to_dict(a_run())
    data["samples"][2]["p99_ms"] = "slow"
    (tmp_path / "broken.json").write_text(json.dumps(data))
    done = report(tmp_path / "report", tmp_path / "broken.json")
    assert done.returncode == 2
    assert "broken.json is not a run file" in done.stderr
    assert "samples[2].p99_ms: expected a number (0 or more) or null, got the string 'slow'" in done.stderr
    assert not (tmp_path / "report" / "index.html").exists()


def test_a_run_reads_back_as_it_was_written(tmp_path: Path) -> None:
    run = a_run()
    write_run(tmp_path / "run.json", run)
    assert read_run(tmp_path / "run.json") == run


def test_a_file_written_by_hand_in_the_same_shape_is_read(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(
        json.dumps(
            {
                "kind": "chaos",
                "started_at": "2025-01-31T08:00:00Z",
                "command": "bench/chaos.py",
                "result": {"lost": 0},
                "samples": [
                    {
                        "t": 0,
                        "attempted": 3,
                        "succeeded": 1,
                        "failed": 1,
                        "rejected": 1,
                        "p50_ms": 12,
                        "p99_ms": 20.5,
                        "queue_depth": None,
                    }
                ],
                "events": [{"t": 0.4, "kind": "kill", "target": "quota"}],
            }
        )
    )
    run = read_run(tmp_path / "run.json")
    assert run.samples[0].p50_ms == 12.0 and run.samples[0].queue_depth is None
    assert run.events == [Event(0.4, "kill", "quota")]


def broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(run_to_dict(a_run()))
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "the top level: expected an object, got a list"),
        (broken(lambda d: d.pop("samples")), "samples: missing"),
        (broken(lambda d: d.update(kind="scale")), "kind: expected one of surge, chaos, got 'scale'"),
        (broken(lambda d: d.update(started_at="yesterday")), "started_at: expected an ISO 8601 time in UTC"),
        (broken(lambda d: d.update(started_at="2025-01-31T15:00:00+07:00")), "(not UTC)"),
        (broken(lambda d: d["result"].update(lost="none")), "result.lost: expected a number"),
        (broken(lambda d: d["samples"][0].update(rejected=-1)), "samples[0].rejected: expected a count"),
        (broken(lambda d: d["samples"][1].update(succeeded=2.5)), "samples[1].succeeded: expected a count"),
        (broken(lambda d: d["samples"][3].pop("queue_depth")), "samples[3].queue_depth: missing"),
        (broken(lambda d: d["samples"][4].update(t=0.0)), "samples[4].t: 0.0 comes before"),
        (broken(lambda d: d["events"][0].pop("target")), "events[0].target: missing"),
        (
            broken(lambda d: d["events"].append("kill")),
            "events[2]: expected an object, got the string 'kill'",
        ),
    ],
)
def test_the_reader_rejects_a_malformed_file_saying_where(tmp_path: Path, data: Any, problem: str) -> None:
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(RunFileError, match=re.escape(problem)) as refused:
        read_run(tmp_path / "run.json")
    assert str(refused.value).startswith(f"{tmp_path / 'run.json'} is not a run file:")


def test_the_reader_rejects_what_is_not_json_and_what_is_not_there(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text('{"kind": "surge",')
    with pytest.raises(RunFileError, match="not JSON"):
        read_run(tmp_path / "run.json")
    with pytest.raises(RunFileError, match="cannot read it"):
        read_run(tmp_path / "missing.json")


def test_the_writer_refuses_a_run_the_reader_would_reject(tmp_path: Path) -> None:
    run = a_run()
    run.samples[0] = Sample(0.0, -1, 0, 0, 0, None, None, None)
    with pytest.raises(RunFileError, match=r"samples\[0\].attempted"):
        write_run(tmp_path / "run.json", run)
    assert not (tmp_path / "run.json").exists()


def test_answers_are_counted_in_the_window_they_were_sent_and_answered_in() -> None:
    answers = [
        Answer(0.1, 0.3, SUCCEEDED),
        Answer(0.2, 1.4, SUCCEEDED),
        Answer(0.5, 0.6, REJECTED),
        Answer(1.1, 2.9, FAILED),
    ]
    depths = [(0.2, {"retail-stamps": 3.0}), (0.7, {"retail-stamps": 7.0}), (1.5, {"retail-stamps": 1.0})]
    samples = samples_from(answers, depths, queue="retail-stamps")

    assert [(s.t, s.attempted, s.succeeded, s.rejected, s.failed) for s in samples] == [
        (0.0, 3, 1, 1, 0),
        (1.0, 1, 1, 0, 0),
        (2.0, 0, 0, 0, 1),
    ]
    assert samples[0].p50_ms == pytest.approx(200.0) and samples[1].p99_ms == pytest.approx(1200.0)
    assert samples[2].p50_ms is None
    assert [s.queue_depth for s in samples] == [7.0, 1.0, None]


def test_a_password_in_the_command_is_hidden() -> None:
    line = command_line(
        ["bench/surge.py", "--postgres-url", "postgresql+psycopg://postgres:s3cret@db:5432/x"]
    )
    assert line == "bench/surge.py --postgres-url 'postgresql+psycopg://postgres:***@db:5432/x'"
