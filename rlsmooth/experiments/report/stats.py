"""The statistics of a report, apart from how they are written: per-run scores (final, mean of the
last N evaluations, area under the learning curve) at a common step, per-cell means with Student-t
intervals, and rliable's stratified-bootstrap aggregates and probability of improvement."""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rlsmooth.experiments.report.runs import Run
from rlsmooth.pieces.scores import human_normalized

CONFIDENCE = 0.95
METRICS = ("final", "last_n", "auc")


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean over seeds; NaN for a single seed."""
    from scipy import stats
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


class Score(NamedTuple):
    final: float      # the last evaluation at or before the comparison step
    last_n: float     # mean of the last N evaluations up to there
    auc: float        # area under the evaluation curve up to there / the steps it spans (a mean return)
    step: int         # the step of the evaluation ``final`` comes from


def comparison_step(runs: list[Run]) -> int | None:
    """The last evaluation step every run of a table reached.  Runs that ended early (diverged, or
    stopped at their target return) do not lower it: their last evaluation is their score."""
    lasts = [r.eval_curve[-1][0] for r in runs if not r.ended_early]
    return min(lasts) if lasts else None


def run_score(run: Run, at_step: int | None, last_n: int) -> Score:
    curve = run.eval_curve if run.ended_early or at_step is None else [c for c in run.eval_curve if c[0] <= at_step]
    curve = curve or run.eval_curve[:1]
    steps = np.array([s for s, _ in curve], dtype=float)
    values = np.array([v for _, v in curve])
    span = steps[-1] - steps[0]
    auc = float(np.trapezoid(values, steps) / span) if span > 0 else float(values[-1])
    return Score(float(values[-1]), float(values[-last_n:].mean()), auc, int(steps[-1]))


class CellStats(NamedTuple):
    runs: int
    seeds: int                 # distinct seeds
    repeated_seeds: list[int]  # seeds that occur more than once
    diverged: int
    means: dict[str, tuple[float, float, float]]   # metric -> (mean, t low, t high)
    steps: list[int]           # evaluation steps the finals come from


def cell_stats(runs: list[Run], scores: dict[Path, Score]) -> CellStats:
    seeds = [r.seed for r in runs]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    means = {}
    for metric in METRICS:
        values = np.array([getattr(scores[r.path], metric) for r in runs])
        means[metric] = (float(values.mean()), *t_interval(values))
    return CellStats(len(runs), len(set(seeds)), repeated, sum(r.diverged for r in runs), means,
                     sorted({scores[r.path].step for r in runs}))


def score_matrices(runs: list[Run], scores: dict, games: list[str], variants: list[str], normalise: bool,
                   metric: str = "final") -> dict[str, np.ndarray]:
    """{variant: (seeds, games)} scores; seeds cut to the smallest count so matrices are full."""
    groups = {(r.variant, r.row): sorted((x for x in runs if x.variant == r.variant and x.row == r.row),
                                         key=lambda x: x.seed) for r in runs}
    n = min(len(groups.get((v, g), [])) for v in variants for g in games)
    out = {}
    for v in variants:
        matrix = np.zeros((n, len(games)))
        for j, g in enumerate(games):
            for i, run in enumerate(groups[(v, g)][:n]):
                value = getattr(scores[run.path], metric)
                matrix[i, j] = human_normalized(run.game, value) if normalise else value
        out[v] = matrix
    return out


def aggregates(matrices: dict[str, np.ndarray], reps: int, seed: int = 0) -> dict[str, dict[str, tuple]]:
    """Median, IQM and mean over games and seeds with stratified-bootstrap CIs (rliable)."""
    from rliable import library as rly
    from rliable import metrics
    np.random.seed(seed)  # rliable's bootstrap draws from numpy's global generator

    def fn(x):
        return np.array([metrics.aggregate_median(x), metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    point, interval = rly.get_interval_estimates(matrices, fn, reps=reps, confidence_interval_size=CONFIDENCE)
    return {v: {name: (float(point[v][i]), float(interval[v][0][i]), float(interval[v][1][i]))
                for i, name in enumerate(("median", "iqm", "mean"))} for v in matrices}


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) on each game, averaged over games (rows are seeds, columns games): the Mann-Whitney U
    statistic over n_x * n_y, ties counting one half, NaN for a game with a NaN score.  This is
    rliable's ``probability_of_improvement`` to the bit, in one array pass: rliable makes one scipy
    call per game, and the bootstrap calls it thousands of times, most of a report's time."""
    x, y = scores_x[:, None, :], scores_y[None, :, :]
    counted = (x > y).sum(axis=(0, 1)) + 0.5 * (x == y).sum(axis=(0, 1))
    per_game = counted / (len(scores_x) * len(scores_y))
    missing = np.isnan(scores_x).any(axis=0) | np.isnan(scores_y).any(axis=0)
    return np.mean(np.where(missing, np.nan, per_game))


def improvement_probabilities(matrices: dict[str, np.ndarray], baseline: str, reps: int,
                              seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """P(variant > baseline) averaged over games (Agarwal et al. 2021), with bootstrap CI (NaN for one seed)."""
    from rliable import library as rly
    np.random.seed(seed)
    pairs = {v: (m, matrices[baseline]) for v, m in matrices.items() if v != baseline}
    if not pairs:
        return {}
    point, interval = rly.get_interval_estimates(pairs, probability_of_improvement, reps=reps,
                                                 confidence_interval_size=CONFIDENCE)
    one_seed = min(len(m) for m in matrices.values()) < 2   # resampling one seed gives back the point
    return {v: (float(point[v]), *((math.nan, math.nan) if one_seed else
                                   (float(np.ravel(interval[v])[0]), float(np.ravel(interval[v])[1]))))
            for v in pairs}


def sigma_at(run: Run, layer: str, at_step: int | None) -> float | None:
    """The run's last recorded sigma of ``layer`` at or before ``at_step`` (its last one for a run that
    ended early, or with no common step); None where it has none."""
    curve = run.sigma_curves.get(layer) or []
    if not (run.ended_early or at_step is None):
        curve = [c for c in curve if c[0] <= at_step]
    return curve[-1][1] if curve else None


def sigma_cells(runs: list[Run], at_steps: dict[str, int | None]) -> dict[tuple[str, str, str], tuple]:
    """{(row, variant, layer): (runs, mean, t low, t high)} of the sigma each run had at its table's
    comparison step, for every layer any run of the row tracked."""
    cells: dict[tuple[str, str, str], list[float]] = {}
    for r in runs:
        for layer in r.sigma_curves:
            value = sigma_at(r, layer, at_steps.get(r.row))
            if value is not None:
                cells.setdefault((r.row, r.variant, layer), []).append(value)
    return {k: (len(v), float(np.mean(v)), *t_interval(np.array(v))) for k, v in sorted(cells.items())}


def curve_band(curves: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps of any curve, the mean over the curves that have each step, and its t-interval (NaN where
    fewer than two curves have the step)."""
    steps = sorted({s for c in curves for s, _ in c})
    by_step = [[dict(c)[s] for c in curves if s in dict(c)] for s in steps]
    mean = np.array([np.mean(v) for v in by_step])
    bands = np.array([t_interval(np.array(v)) for v in by_step]).reshape(len(steps), 2)
    return np.array(steps), mean, bands[:, 0], bands[:, 1]

