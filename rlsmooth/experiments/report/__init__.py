"""``rlsmooth compare``: per-game tables (final, last-N and area-under-curve scores with t-intervals),
human-normalised aggregates and the probability of improvement with stratified-bootstrap CIs
(rliable), learning and sigma curves, and a heat map of any extra sweep axis.

Reads run directories (finished or still running) and sweep directories (searched for run
directories).  A run whose config or metrics file is missing or malformed is reported by name and
skipped; the report lists every run it used.  Runs are never averaged across suites, agents or
sweep-axis values: each of those is its own row or variant.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from rlsmooth.errors import ConfigError
from rlsmooth.experiments.report import plots, tables
from rlsmooth.experiments.report.runs import (Run, default_extra, find_run_dirs, game_labels, load_run,  # noqa: F401
                                             split_variants, variant_label)
from rlsmooth.experiments.report.stats import (aggregates, cell_stats, comparison_step, improvement_probabilities,
                                               run_score, score_matrices, sigma_cells)
from rlsmooth.pieces.scores import REFERENCE_SCORES

REPORT_MODULES = ("rliable", "matplotlib", "scipy")
# the final evaluation alone can flip a comparison on noisy evaluations: P(improvement) of both
IMPROVEMENT_METRICS = ("final", "last_n")


def check_report_extra() -> None:
    """One line before anything is written when the ``report`` extra is not installed."""
    missing = [m for m in REPORT_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"compare needs the report extra (missing: {', '.join(missing)}): "
                          f"pip install -e '.[report]'")


def load_runs(paths: list[Path]) -> tuple[list[Run], list[str]]:
    run_dirs, skipped = find_run_dirs(paths)
    runs = []
    for d in run_dirs:
        try:
            runs.append(load_run(d))
        except ValueError as exc:
            skipped.append(f"{d}: {exc}")
    if len({r.agent for r in runs}) > 1:   # one agent's variants are never another's
        for r in runs:
            r.core = f"{r.agent}:{r.core}"
    split_variants(runs)
    game_labels(runs)
    return runs, skipped


def improvement_groups(runs: list[Run], scores: dict, baseline: str, reps: int):
    """P(improvement) within each group of variants that share their extra sweep-axis values (and agent),
    against that group's baseline; the reasons where a group has none."""
    poi, reasons, seeds = {}, [], 0
    groups: dict[tuple[str, str], set[str]] = {}
    for r in runs:
        prefix = r.core.split(":", 1)[0] + ":" if ":" in r.core else ""
        groups.setdefault((prefix, r.extra), set()).add(r.variant)
    for (prefix, extra), variants in sorted(groups.items()):
        base = " ".join(p for p in (prefix + baseline, extra) if p)
        if len(variants) < 2:
            continue
        if base not in variants:
            reasons.append(f"no probability of improvement for {sorted(variants)}: no `{base}` variant among them")
            continue
        members = [r for r in runs if r.variant in variants]
        rows = sorted({r.row for r in members})
        complete = [g for g in rows if all(any(r.row == g and r.variant == v for r in members) for v in variants)]
        if not complete:
            reasons.append(f"no probability of improvement against `{base}`: no game has every variant of its group")
            continue
        ordered = sorted(variants, key=lambda v: (v != base, v))
        matrices = {metric: score_matrices(members, scores, complete, ordered, normalise=False, metric=metric)
                    for metric in IMPROVEMENT_METRICS}
        seeds = min(len(m) for m in matrices["final"].values())   # the same cut for every metric
        by_metric = {metric: improvement_probabilities(matrices[metric], base, reps) for metric in IMPROVEMENT_METRICS}
        poi[base] = {v: {m: by_metric[m][v] for m in IMPROVEMENT_METRICS} for v in by_metric["final"]}
    return poi, reasons, seeds


def compare(paths: list[Path], out: Path, baseline: str = "baseline", reps: int = 2000, last_n: int = 3,
            criteria: Path | None = None) -> dict:
    check_report_extra()
    from rlsmooth.experiments.report.criteria import evaluate, load_criteria, section
    registered = load_criteria(Path(criteria)) if criteria is not None else None
    runs, skipped = load_runs(paths)
    for s in skipped:
        print(f"skipped {s}")
    if not runs:
        raise ConfigError("no usable runs found in " + ", ".join(map(str, paths)))
    rows = sorted({r.row for r in runs})
    variants = sorted({r.variant for r in runs}, key=lambda v: (not v.split(" ")[0].endswith(baseline), v))
    at_steps = {g: comparison_step([r for r in runs if r.row == g]) for g in rows}
    scores = {r.path: run_score(r, at_steps[r.row], last_n) for r in runs}
    cells = {(g, v): cell_stats(group, scores) for g in rows for v in variants
             if (group := [r for r in runs if r.row == g and r.variant == v])}
    poi, reasons, seeds = improvement_groups(runs, scores, baseline, reps)
    atari = [g for g in rows if all(r.suite == "atari" and r.game in REFERENCE_SCORES for r in runs if r.row == g)
             and all((g, v) in cells for v in variants)]
    agg = aggregates(score_matrices(runs, scores, atari, variants, normalise=True), reps) if atari else {}

    out.mkdir(parents=True, exist_ok=True)
    tables.write_scores_csv(runs, scores, out)
    flags = {"criteria": tables.relative(Path(criteria), out)} if criteria is not None else {}
    tables.write_inputs(paths, out, baseline=baseline, reps=reps, last_n=last_n, **flags)
    verdicts = evaluate(registered, runs, scores, reps) if registered else []
    skips = {r.frames_per_step for r in runs}
    frames = skips.pop() if len(skips) == 1 and all(r.suite == "atari" for r in runs) else None
    cores = sorted({r.core for r in runs}, key=lambda c: (not c.endswith(baseline), c))
    extras = sorted({r.extra for r in runs})
    default, preset_values = default_extra(runs)   # (None, "") without a second extra-axis value
    figures = [p for p in (plots.plot_curves(runs, rows, variants, out, frames, sigma=False),
                           plots.plot_curves(runs, rows, variants, out, frames, sigma=True),
                           plots.plot_heatmap(cells, rows, cores, extras, "last_n", out,
                                              f"last-{last_n} mean", default)) if p]
    lines = ["# rlsmooth comparison report", "", f"{len(runs)} runs used, {len(skipped)} skipped.", ""]
    if registered:
        lines += section(registered, verdicts, reps)
    lines += tables.cell_table(cells, rows, variants, last_n, at_steps)
    lines += tables.sigma_table(sigma_cells(runs, at_steps), at_steps)
    lines += tables.step_notes(runs, rows, at_steps)
    lines += tables.improvement_section(poi, reasons, seeds, last_n)
    lines += tables.aggregates_section(agg, atari)
    if not atari and all(r.suite != "atari" for r in runs):
        lines += ["No human-normalised aggregates: human reference scores exist for Atari games only.", ""]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    if preset_values:
        lines += [f"Heat map: the column marked (default) holds the preset's own setting ({preset_values})." if default
                  is not None else f"Heat map: no column holds the preset's own setting ({preset_values}).", ""]
    if len(extras) < 2:
        lines += ["No heat map: it draws a sweep axis besides game, seed and variant (a learning rate, a network "
                  "size) against the variants, and these runs have " + ("none" if extras == [""] else "one value of it")
                  + ".", ""]
    lines += tables.runs_section(runs, out, skipped)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"report: {out / 'report.md'} ({len(runs)} runs, {len(skipped)} skipped)")
    return {"table": {k: (c.runs, *c.means["final"]) for k, c in cells.items()}, "cells": cells,
            "aggregates": agg, "improvement": {v: t["final"] for group in poi.values() for v, t in group.items()},
            "improvement_last_n": {v: t["last_n"] for group in poi.values() for v, t in group.items()},
            "comparison_steps": at_steps, "criteria": verdicts}
