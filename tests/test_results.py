"""Every study under results/ ships its raw runs, and its committed report re-derives from them.

A study is a folder ``results/<study>/`` with its runs (each ``config.yaml``, ``metrics.jsonl``, and
``summary.json`` once finished) and a ``compare`` report holding ``compare.json`` (the inputs and
flags it was made with) and ``scores.csv``.  Re-running compare on the committed runs must give the
committed ``scores.csv`` exactly.
"""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from rlsmooth.experiments.report import compare

RESULTS = Path(__file__).resolve().parents[1] / "results"
REPORTS = sorted(p.parent for p in RESULTS.rglob("scores.csv"))


def _rows(report: Path) -> list[dict]:
    with open(report / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:   # run_dir is relative to the report folder that wrote it
        row["run_dir"] = str((report / row["run_dir"]).resolve())
    return rows


def test_results_has_studies():
    assert REPORTS, "no study under results/ has a scores.csv"


@pytest.mark.parametrize("report", REPORTS, ids=[str(r.relative_to(RESULTS)) for r in REPORTS])
def test_every_run_a_report_names_is_committed(report):
    assert (report / "compare.json").is_file(), f"{report} has no compare.json: its inputs are unknown"
    rows = _rows(report)
    assert rows
    for row in rows:
        run = Path(row["run_dir"])
        assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file(), run
        assert (run / "summary.json").is_file() == (row["finished"] == "True"), run
    tracked = subprocess.run(["git", "ls-files", str(report.parent)], cwd=RESULTS.parent, capture_output=True,
                             text=True).stdout.split()
    if tracked:   # in a git checkout: the runs are committed, and no checkpoint or event file is
        names = {Path(t).name for t in tracked}
        assert not any(n.endswith(".pt") or n.startswith("events.out.tfevents") for n in names)
        for row in rows:
            rel = Path(row["run_dir"]).relative_to(RESULTS.parent)
            assert str(rel / "metrics.jsonl") in tracked, f"{rel} is not committed"


@pytest.mark.parametrize("report", REPORTS, ids=[str(r.relative_to(RESULTS)) for r in REPORTS])
def test_committed_report_re_derives_from_its_runs(report, tmp_path):
    spec = json.loads((report / "compare.json").read_text())
    inputs = [(report / p).resolve() for p in spec.pop("inputs")]
    if "criteria" in spec:
        spec["criteria"] = (report / spec["criteria"]).resolve()
    compare(inputs, tmp_path / "report", **spec)
    assert _rows(tmp_path / "report") == _rows(report)
    verdicts = [line for line in (report / "report.md").read_text().splitlines() if line.startswith("- **")]
    assert verdicts == [line for line in (tmp_path / "report" / "report.md").read_text().splitlines()
                        if line.startswith("- **")]   # the verdict lines too
