"""Writing a report: ``scores.csv`` (one row per run) and the sections of ``report.md``."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from rlsmooth.experiments.report.runs import Run
from rlsmooth.experiments.report.stats import CellStats, Score
from rlsmooth.pieces.scores import human_normalized

METRIC_NAMES = {"final": "final", "last_n": "last-{n} mean", "auc": "AUC"}
RELIABLE_SEEDS = 5
"""Below this many seeds per cell, bootstrap intervals are marked unreliable."""


def fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def relative(path: Path, out: Path) -> str:
    """A run's path as the report names it: relative to the report's own folder, so a report and
    its runs can move together (results/<study>/report and results/<study>/runs)."""
    return os.path.relpath(Path(path).resolve(), Path(out).resolve())


def write_inputs(paths: list[Path], out: Path, **flags) -> None:
    """``compare.json``: the inputs (relative to the report) and flags, so the report can be re-derived
    from its runs by one command."""
    inputs = [relative(p, out) for p in paths]
    (out / "compare.json").write_text(json.dumps({"inputs": inputs, **flags}, indent=1) + "\n")


def write_scores_csv(runs: list[Run], scores: dict[Path, Score], out: Path) -> None:
    with open(out / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run_dir", "agent", "suite", "game", "variant", "seed", "last_step", "finished", "diverged",
                         "eval_step", "final_eval_return", "last_n_mean", "auc", "human_normalized"])
        for r in sorted(runs, key=lambda r: (r.row, r.variant, r.seed, str(r.path))):
            s = scores[r.path]
            hns = human_normalized(r.game, s.final) if r.suite == "atari" else math.nan
            writer.writerow([relative(r.path, out), r.agent, r.suite, r.game, r.variant, r.seed, r.last_step,
                             r.finished, r.diverged, s.step, s.final, s.last_n, s.auc, "" if math.isnan(hns) else hns])


def cell_table(cells: dict[tuple[str, str], CellStats], rows: list[str], variants: list[str], last_n: int,
               at_steps: dict[str, int | None]) -> list[str]:
    names = [METRIC_NAMES[m].format(n=last_n) for m in ("final", "last_n", "auc")]
    lines = ["## Per game: evaluation return over seeds", "",
             f"Mean over seeds with a 95% Student-t interval for each score: **final** (the last evaluation), "
             f"**last-{last_n} mean** (the mean of the last {last_n} evaluations) and **AUC** (the area under the "
             "evaluation curve divided by the steps it spans: the mean return over training). Within a game every "
             "run is scored at the last evaluation step all of its runs reached; a diverged run, or one stopped at "
             "its target return, is scored at its last finite evaluation, wherever it stopped.", "",
             "| game | variant | runs | seeds | " + " | ".join(f"{n} [95% t]" for n in names)
             + " | scored at step | notes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g in rows:
        for v in variants:
            cell = cells.get((g, v))
            if cell is None:
                continue
            values = " | ".join(f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]" for m, lo, hi in
                                (cell.means[k] for k in ("final", "last_n", "auc")))
            notes = []
            if cell.diverged:
                notes.append(f"{cell.diverged} diverged")
            if cell.repeated_seeds:
                notes.append(f"repeated seeds {cell.repeated_seeds}: {cell.runs} runs, {cell.seeds} seeds")
            if len(cell.steps) > 1 or (at_steps.get(g) is not None and cell.steps[-1] != at_steps[g]):
                notes.append("steps differ")
            lines.append(f"| {g} | {v} | {cell.runs} | {cell.seeds} | {values} | "
                         f"{', '.join(f'{s:,}' for s in cell.steps)} | {'; '.join(notes)} |")
    return lines + [""]


def sigma_table(sigma: dict[tuple[str, str, str], tuple], at_steps: dict[str, int | None]) -> list[str]:
    """Each tracked layer's spectral norm at the comparison step, per game and variant."""
    if not sigma:
        return []
    lines = ["## Per game: spectral norm of the tracked layers", "",
             "sigma of each tracked layer's trainable weight (for a normalised layer, the weight before SN "
             "divides it by sigma), as the power iteration estimated it, at the last record at or before the "
             "table's comparison step: mean over runs with a 95% Student-t interval.", "",
             "| game | variant | layer | runs | sigma [95% t] | at step |", "|---|---|---|---|---|---|"]
    for (g, v, layer), (n, mean, lo, hi) in sigma.items():
        step = at_steps.get(g)
        lines.append(f"| {g} | {v} | {layer} | {n} | {fmt(mean)} [{fmt(lo)}, {fmt(hi)}] | "
                     f"{'last record' if step is None else f'{step:,}'} |")
    return lines + [""]


def step_notes(runs: list[Run], rows: list[str], at_steps: dict[str, int | None]) -> list[str]:
    """Which tables hold runs that stopped at different steps, and where they are compared."""
    lines = []
    for g in rows:
        group = [r for r in runs if r.row == g]
        lasts = sorted({r.eval_curve[-1][0] for r in group if not r.ended_early})
        if len(lasts) > 1:
            beyond = sorted(relative(r.path, Path.cwd()) for r in group
                            if not r.ended_early and r.eval_curve[-1][0] > at_steps[g])
            lines.append(f"- **{g}**: runs stopped at different steps ({', '.join(f'{s:,}' for s in lasts)}); "
                         f"all are compared at step {at_steps[g]:,}, the last one every run reached "
                         f"({len(beyond)} run(s) went further).")
    return (["## Runs that stopped at different steps", ""] + lines + [""]) if lines else []


def improvement_section(poi: dict[str, dict[str, dict]], reasons: list[str], seeds: int,
                        last_n: int) -> list[str]:
    if not poi and not reasons:
        return []
    lines = ["## Probability of improvement over the baseline", "",
             f"P(X > Y) of final scores and of last-{last_n} means, averaged over the games every variant of a "
             f"group has (Agarwal et al. 2021), with stratified-bootstrap 95% CIs over {seeds} seed(s) per cell"
             + (" (one seed: no interval)" if seeds < 2 else "") + ". Each group compares variants that share "
             "the values of the sweep's other axes with that group's baseline.", ""]
    if 2 <= seeds < RELIABLE_SEEDS:
        lines += [f"**Unreliable intervals (marked †):** {seeds} seeds per cell. A percentile bootstrap resamples "
                  f"the few scores it has, so its interval is too narrow: with 2 seeds that all beat the baseline's "
                  f"it reads 1.00 [1.00, 1.00]. Read these intervals as descriptive below {RELIABLE_SEEDS} seeds; the "
                  f"t-intervals of the per-game table are the wider, honest ones.", ""]
    mark = "†" if 2 <= seeds < RELIABLE_SEEDS else ""
    if poi:
        lines += [f"| variant | against | P(improves), final [95% CI] | P(improves), last-{last_n} mean [95% CI] |",
                  "|---|---|---|---|"]
        for base, group in poi.items():
            lines += [f"| {v} | {base} | " + " | ".join(f"{p:.2f} [{fmt(lo)}, {fmt(hi)}]{mark}" for p, lo, hi in
                                                         (by_metric["final"], by_metric["last_n"])) + " |"
                      for v, by_metric in group.items()]
        lines.append("")
    return lines + [f"- {r}" for r in reasons] + ([""] if reasons else [])


def aggregates_section(agg: dict, atari: list[str]) -> list[str]:
    if not agg:
        return []
    lines = ["## Human-normalised aggregates", "",
             f"Over {len(atari)} Atari game(s): {', '.join(atari)}. Reference scores: rlsmooth/pieces/scores.py. "
             "95% stratified-bootstrap CIs (rliable).", "", "| variant | median | IQM | mean |", "|---|---|---|---|"]
    for v, m in agg.items():
        lines.append(f"| {v} | " + " | ".join(f"{m[k][0]:.3f} [{m[k][1]:.3f}, {m[k][2]:.3f}]"
                                              for k in ("median", "iqm", "mean")) + " |")
    return lines + [""]


def runs_section(runs: list[Run], out: Path, skipped: list[str]) -> list[str]:
    lines = ["## Runs used", "", "| run | game | variant | seed | last step | finished |", "|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r.row, r.variant, r.seed, str(r.path))):
        state = "diverged" if r.diverged else "yes" if r.finished else "no"
        lines.append(f"| {relative(r.path, out)} | {r.row} | {r.variant} | {r.seed} | {r.last_step:,} | {state} |")
    dropped = [r for r in runs if r.dropped_nonfinite]
    if dropped:
        lines += ["", "Evaluations with a non-finite return were left out of: "
                  + ", ".join(f"{relative(r.path, out)} ({r.dropped_nonfinite})" for r in dropped) + "."]
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- {s}" for s in skipped]
    return lines
