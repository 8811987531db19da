"""The benchmark harness's pure parts: summaries, percentiles, BENCHMARKS.md sections,
charts, and how `retailstream bench` picks scripts and counts the figures they left."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retailstream import benchmarks
from retailstream.errors import UserError
from support import PROJECT_HOME

sys.path.insert(0, str(PROJECT_HOME / "bench"))  # the scripts import `harness` and `plots` so

import harness  # noqa: E402
import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_summary_gives_median_quartiles_and_relative_spread() -> None:
    summary = harness.Summary.of([10.0, 12.0, 8.0, 11.0, 9.0])
    assert (summary.median, summary.minimum, summary.maximum, summary.n) == (10.0, 8.0, 12.0, 5)
    assert (summary.q1, summary.q3) == (9.0, 11.0)
    assert summary.relative_spread == pytest.approx(0.4)


def test_percentiles_interpolate_inside_the_sample() -> None:
    values = [float(v) for v in range(1, 101)]
    cuts = harness.percentiles(values)
    assert cuts["p50"] == pytest.approx(50.5)
    assert cuts["p99"] is not None and 99.0 <= cuts["p99"] <= 100.0
    assert cuts["max"] == 100.0
    assert harness.percentiles([]) == {"p50": None, "p95": None, "p99": None, "max": None}


def test_replace_section_rewrites_only_its_own_markers() -> None:
    document = "# B\n\n<!-- bench:a -->\nold a\n<!-- /bench:a -->\n\n<!-- bench:b -->\nb\n<!-- /bench:b -->\n"
    updated = harness.replace_section(document, "a", "new a")
    assert "new a" in updated and "old a" not in updated
    assert "<!-- bench:b -->\nb\n<!-- /bench:b -->" in updated
    appended = harness.replace_section(updated, "c", "c body")
    assert appended.endswith("<!-- bench:c -->\nc body\n<!-- /bench:c -->\n")


def test_machine_section_names_the_run_and_the_versions() -> None:
    info = harness.machine()
    text = harness.machine_section(info, "peer", datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    assert "`peer`, 2026-11-28 12:00 UTC" in text
    assert f"{info['cores']} cores" in text
    assert f"- Python: {info['python']}" in text


def _rates_payload() -> dict:
    result = {
        "base": harness.CaseResult("base", [1.0, 1.1], [1000, 1000]),
        "fast": harness.CaseResult("fast", [0.5, 0.6], [1000, 1000]),
    }
    return {
        "title": "t",
        "baseline": "base",
        "cases": {
            label: {"events_per_second": asdict(harness.Summary.of(r.rates))}
            for label, r in result.items()
        },
    }


def test_rates_and_tables_are_drawn_as_png(tmp_path: Path) -> None:
    rates = plots.draw(_rates_payload(), tmp_path / "rates.png")
    table = harness.Table(
        "latency",
        [harness.Column("clients", "clients"), harness.Column("p50", "p50 ms")],
        [{"clients": 1, "p50": 2.0}, {"clients": 8, "p50": 9.5}],
        plots.Plot(("clients",), ("p50",), "ms"),
    )
    plot = table.plot_with_legend()
    assert plot is not None
    tables = plots.draw(
        {"title": "t", "tables": [{"caption": "c", "rows": table.rows, "plot": asdict(plot)}]},
        tmp_path / "tables.png",
    )  # fmt: skip
    for path in (rates, tables):
        assert path is not None and path.read_bytes()[:8] == PNG_MAGIC
    assert plot.legend == ("p50 ms",)
    # A result whose tables say nothing about plotting has no chart.
    assert (
        plots.draw({"title": "t", "tables": [{"caption": "c", "rows": [{}]}]}, tmp_path / "n.png")
        is None
    )


def test_every_script_is_listed_and_unknown_names_are_refused() -> None:
    scripts = benchmarks.available(PROJECT_HOME)
    assert list(scripts)[: len(benchmarks.ORDER)] == list(benchmarks.ORDER)
    assert set(scripts) == {
        p.stem.removeprefix("bench_") for p in (PROJECT_HOME / "bench").glob("bench_*.py")
    }
    assert list(benchmarks.select(PROJECT_HOME, ["peer", "ingest"])) == ["peer", "ingest"]
    with pytest.raises(UserError, match="unknown benchmark nope; known: generator"):
        benchmarks.select(PROJECT_HOME, ["peer", "nope"])


def test_figures_count_only_a_result_written_by_this_run(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    started = time.time()
    assert benchmarks.figures_since(path, started) == 0  # no file
    path.write_text(json.dumps(_rates_payload()))
    assert benchmarks.figures_since(path, started - 1) == 2
    assert benchmarks.figures_since(path, time.time() + 60) == 0  # older than the run
    path.write_text(json.dumps({"tables": [{"rows": [{"a": 1}, {"a": 2}]}, {"rows": []}]}))
    assert benchmarks.figures_since(path, started - 1) == 2
    path.write_text("{not json")
    assert benchmarks.figures_since(path, started - 1) == 0
