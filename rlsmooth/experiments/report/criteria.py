"""Pre-registered criteria, evaluated by ``compare --criteria FILE``: the study's verdict, written by the tool.

A criteria file is written before the runs, beside the sweep::

    score: last_n          # final | last_n | auc: the score every criterion reads (default last_n)
    min_seeds: 5           # below this many seeds per cell the bootstrap intervals are marked unreliable
    criteria:
      - name: SN's gain is specific to the high learning rate
        treatment: sn_fc   # variants as the sweep names them
        baseline: baseline
        axis: lr           # a sweep axis whose two levels are compared (a difference in differences)
        at: "2.15e-3"
        versus: "2.15e-4"
        statistic: mean    # mean: of the score; probability: P(treatment > baseline)
        holds_above: 0.0   # holds when the whole 95% interval lies above this
        fails_below: 0.0   # fails when the whole interval lies below this; else undecided
        games: [asterix, space_invaders]   # default: every game that has all the cells

Without ``versus`` a criterion is a plain contrast at one level (``at``, or the only level): the
improvement of the treatment over the baseline (mean difference, or P(treatment > baseline) with a
default threshold of 0.5).  With ``versus`` it is the improvement at ``at`` minus that at ``versus``.
With ``baseline_at`` the baseline is read at another level of the axis than the treatment, so one
variant can be compared with itself across the axis (bf16 against fp32)::

      - name: bf16 trains the baseline as fp32 does
        treatment: baseline
        axis: precision
        at: bf16
        baseline_at: fp32
        statistic: probability
        score: auc                    # this criterion's own score (default: the file's)
        equivalent_within: [0.36, 0.64]

``equivalent_within`` makes it a test of equivalence: it **holds** when the whole interval lies inside
the margin, **fails** when the whole interval lies outside it, and is undecided otherwise; its line
also says whether the interval excludes no difference at all (0 for a mean, 0.5 for a probability).
Per game the statistic is computed from the runs' scores; games are pooled by their mean.  The
interval is a stratified bootstrap: every (game, variant, level) cell's seeds are resampled with
replacement, ``reps`` times.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlsmooth.config.yaml_files import parse_yaml
from rlsmooth.errors import ConfigError
from rlsmooth.files import read_text

SCORES = ("final", "last_n", "auc")
STATISTICS = ("mean", "probability")


@dataclass
class Criterion:
    name: str
    treatment: str
    baseline: str = "baseline"
    axis: str | None = None
    at: str | None = None
    versus: str | None = None
    statistic: str = "mean"
    holds_above: float | None = None
    fails_below: float | None = None
    games: list[str] | None = None
    baseline_at: str | None = None      # the baseline's level of the axis, when not the treatment's
    score: str | None = None            # this criterion's score, when not the file's
    equivalent_within: list[float] | None = None   # [low, high]: a test of equivalence

    @property
    def null(self) -> float:
        """The value of no difference at all."""
        return 0.5 if self.statistic == "probability" and self.versus is None else 0.0

    @property
    def threshold(self) -> float:
        if self.holds_above is not None:
            return self.holds_above
        return 0.5 if self.statistic == "probability" and self.versus is None else 0.0

    @property
    def fail_threshold(self) -> float:
        return self.fails_below if self.fails_below is not None else self.threshold

    def contrast(self) -> str:
        what = "mean difference" if self.statistic == "mean" else "P(treatment > baseline)"
        where = f" at {self.axis}={self.at}" if self.at is not None else ""
        if self.baseline_at is not None:
            if self.statistic == "probability":
                what = f"P({self.axis}={self.at} > {self.axis}={self.baseline_at})"
            return f"{self.treatment}{where} against {self.baseline} at {self.axis}={self.baseline_at}, {what}"
        if self.versus is not None:
            return f"({self.treatment} - {self.baseline}){where} minus at {self.axis}={self.versus}, {what}"
        return f"{self.treatment} against {self.baseline}{where}, {what}"


@dataclass
class Criteria:
    path: Path
    score: str
    min_seeds: int
    items: list[Criterion] = field(default_factory=list)


FIELDS = set(Criterion.__dataclass_fields__)


def load_criteria(path: Path) -> Criteria:
    """Parse and check a criteria file; ConfigError with one line for anything wrong."""
    spec = parse_yaml(read_text(path, "criteria file"), path)
    if not isinstance(spec, dict) or not isinstance(spec.get("criteria"), list) or not spec["criteria"]:
        raise ConfigError(f"{path}: a criteria file is a mapping with a non-empty list 'criteria'")
    unknown = sorted(set(spec) - {"score", "min_seeds", "criteria"})
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}' (valid: criteria, min_seeds, score)")
    score = spec.get("score", "last_n")
    if score not in SCORES:
        raise ConfigError(f"{path}: score must be one of {', '.join(SCORES)}, got {score!r}")
    min_seeds = spec.get("min_seeds", 5)
    if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < 2:
        raise ConfigError(f"{path}: min_seeds must be an integer >= 2")
    items = []
    for i, entry in enumerate(spec["criteria"]):
        where = f"{path}: criteria[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping")
        bad = sorted(set(entry) - FIELDS)
        if bad:
            raise ConfigError(f"{where}: unknown key '{bad[0]}' (valid: {', '.join(sorted(FIELDS))})")
        for key in ("name", "treatment"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(f"{where}: '{key}' must be a non-empty string")
        values = {k: (str(v) if k in ("at", "versus", "baseline_at") and v is not None else v) for k, v in entry.items()}
        crit = Criterion(**values)
        if crit.statistic not in STATISTICS:
            raise ConfigError(f"{where}: statistic must be mean or probability, got {crit.statistic!r}")
        if (crit.at is not None or crit.versus is not None) and not crit.axis:
            raise ConfigError(f"{where}: 'at' and 'versus' name levels of an 'axis'")
        for key in ("holds_above", "fails_below"):
            value = getattr(crit, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{where}: {key} must be a number")
        if crit.fail_threshold > crit.threshold:
            raise ConfigError(f"{where}: fails_below must not exceed holds_above")
        problem = _level_problem(crit)
        if problem:
            raise ConfigError(f"{where}: {problem}")
        if crit.games is not None and (not isinstance(crit.games, list) or not all(isinstance(g, str) for g in crit.games)):
            raise ConfigError(f"{where}: games must be a list of game names")
        items.append(crit)
    return Criteria(path, score, min_seeds, items)


def _level_problem(crit: Criterion) -> str:
    """What is wrong with a criterion's baseline level, score or equivalence margin ('' for nothing)."""
    if crit.baseline_at is not None:
        if not crit.axis or crit.at is None:
            return "'baseline_at' needs an 'axis' and the treatment's level 'at'"
        if crit.versus is not None:
            return "'baseline_at' and 'versus' do not go together: one compares two levels, the other two gaps"
    elif crit.treatment == crit.baseline:
        return "treatment and baseline are one variant: name the baseline's level with 'baseline_at'"
    if crit.score is not None and crit.score not in SCORES:
        return f"score must be one of {', '.join(SCORES)}, got {crit.score!r}"
    margin = crit.equivalent_within
    if margin is not None:
        if (not isinstance(margin, list) or len(margin) != 2 or
                not all(isinstance(m, (int, float)) and not isinstance(m, bool) for m in margin) or margin[0] >= margin[1]):
            return "equivalent_within must be [low, high] with low < high"
        if crit.holds_above is not None or crit.fails_below is not None:
            return "equivalent_within replaces holds_above and fails_below"
        if not margin[0] < crit.null < margin[1]:
            return f"equivalent_within must contain {crit.null:g}, the value of no difference"
    return ""


# -- the statistics (pure functions of score arrays) ------------------------------------------------

def improvement_probability(treatment: np.ndarray, baseline: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2 over all pairs of a treatment and a baseline score."""
    diff = treatment[:, None] - baseline[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def contrast_value(cells: dict[str, list[np.ndarray]], statistic: str, has_versus: bool) -> float:
    """The pooled statistic from per-game score arrays: ``cells`` maps 'T@at', 'B@at' (and 'T@versus',
    'B@versus') to one array per game, games in the same order."""
    def improvement(t: np.ndarray, b: np.ndarray) -> float:
        return float(t.mean() - b.mean()) if statistic == "mean" else improvement_probability(t, b)
    per_game = []
    for g in range(len(cells["T@at"])):
        value = improvement(cells["T@at"][g], cells["B@at"][g])
        if has_versus:
            value -= improvement(cells["T@versus"][g], cells["B@versus"][g])
        per_game.append(value)
    return float(np.mean(per_game))


def bootstrap_interval(cells: dict[str, list[np.ndarray]], statistic: str, has_versus: bool, reps: int,
                       seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of :func:`contrast_value`, every cell's seeds resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = np.empty(reps)
    for i in range(reps):
        drawn = {key: [a[rng.integers(0, len(a), len(a))] for a in arrays] for key, arrays in cells.items()}
        values[i] = contrast_value(drawn, statistic, has_versus)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def verdict(lo: float, hi: float, holds_above: float, fails_below: float) -> str:
    if lo > holds_above:
        return "holds"
    if hi < fails_below:
        return "fails"
    return "undecided"


def equivalence_verdict(lo: float, hi: float, margin: list[float]) -> str:
    """Holds when the interval lies inside the margin, fails when it lies wholly outside it."""
    if margin[0] < lo and hi < margin[1]:
        return "holds"
    if hi < margin[0] or lo > margin[1]:
        return "fails"
    return "undecided"


@dataclass
class Result:
    criterion: Criterion
    games: list[str]
    seeds: int                  # the fewest seeds in any cell it read
    estimate: float
    interval: tuple[float, float]
    verdict: str
    problem: str = ""           # why it could not be evaluated (then verdict 'undecided')


def _level_of(run, axis: str) -> str | None:
    value = run.axes.get(axis)
    return None if value is None else str(value)


def evaluate(criteria: Criteria, runs: list, scores: dict, reps: int) -> list[Result]:
    """Each criterion's estimate, interval and verdict from the runs' scores (``score`` of the file)."""
    results = []
    for crit in criteria.items:
        keys = {"T@at": (crit.treatment, crit.at),
                "B@at": (crit.baseline, crit.baseline_at if crit.baseline_at is not None else crit.at)}
        score = crit.score or criteria.score
        if crit.versus is not None:
            keys |= {"T@versus": (crit.treatment, crit.versus), "B@versus": (crit.baseline, crit.versus)}

        def cell(game: str, variant: str, level: str | None) -> np.ndarray:
            values = [getattr(scores[r.path], score) for r in runs
                      if r.row == game and r.core == variant
                      and (crit.axis is None or level is None or _level_of(r, crit.axis) == level)]
            return np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)

        rows = sorted({r.row for r in runs})
        games = [g for g in (crit.games or rows) if all(len(cell(g, v, lv)) for v, lv in keys.values())]
        missing = [g for g in (crit.games or []) if g not in games]
        if not games or missing:
            # name the empty cells: a game with some runs is not a game with none
            def empty(g: str) -> str:
                cells = [f"{v}" + (f" at {crit.axis}={lv}" if crit.axis and lv is not None else "")
                         for v, lv in dict.fromkeys(keys.values()) if not len(cell(g, v, lv))]
                return f"{g} ({', '.join(cells)})"
            problem = (f"no runs for {'; '.join(empty(g) for g in missing)}" if missing else
                       "no game has runs in every cell it compares")
            results.append(Result(crit, games, 0, float("nan"), (float("nan"), float("nan")), "undecided", problem))
            continue
        cells = {key: [cell(g, v, lv) for g in games] for key, (v, lv) in keys.items()}
        seeds = min(len(a) for arrays in cells.values() for a in arrays)
        if seeds < 2:   # one run per cell has no spread to resample: no interval, no verdict
            results.append(Result(crit, games, seeds, contrast_value(cells, crit.statistic, crit.versus is not None),
                                  (float("nan"), float("nan")), "undecided", "one seed in a cell: no interval"))
            continue
        estimate = contrast_value(cells, crit.statistic, crit.versus is not None)
        lo, hi = bootstrap_interval(cells, crit.statistic, crit.versus is not None, reps)
        reading = (equivalence_verdict(lo, hi, crit.equivalent_within) if crit.equivalent_within is not None
                   else verdict(lo, hi, crit.threshold, crit.fail_threshold))
        results.append(Result(crit, games, seeds, estimate, (lo, hi), reading))
    return results


def section(criteria: Criteria, results: list[Result], reps: int) -> list[str]:
    """The report's verdict section: one line per criterion, as the tool reads it."""
    names = {"final": "final evaluation", "last_n": "last-N mean", "auc": "AUC"}
    lines = ["## Pre-registered criteria", "",
             f"From `{criteria.path.name}`; score: {names[criteria.score]}; 95% stratified-bootstrap intervals "
             f"({reps} resamples of every cell's seeds). A criterion **holds** when its whole interval lies above "
             f"its threshold, **fails** when it lies below its failure threshold, and is **undecided** otherwise."
             + (" A test of equivalence **holds** when its whole interval lies inside its margin and **fails** when "
                "the whole interval lies outside it." if any(c.equivalent_within for c in criteria.items) else ""), ""]
    few = [r for r in results if 0 < r.seeds < criteria.min_seeds]
    for r in results:
        c = r.criterion
        if r.problem:
            lines.append(f"- **undecided**: {c.name}: {c.contrast()}: not evaluated ({r.problem})")
            continue
        caveat = f"; {r.seeds} seeds per cell: interval unreliable" if r.seeds < criteria.min_seeds else ""
        scored = f" of the {names[c.score]}" if c.score and c.score != criteria.score else ""
        if c.equivalent_within is not None:
            low, high = c.equivalent_within
            contains = r.interval[0] <= c.null <= r.interval[1]
            rule = (f"equivalent within [{low:g}, {high:g}]; the interval "
                    + (f"contains {c.null:g}: no difference detected" if contains
                       else f"excludes {c.null:g}: a difference detected"))
        else:
            rule = f"holds above {c.threshold:g}, fails below {c.fail_threshold:g}"
        lines.append(f"- **{r.verdict}**: {c.name}: {c.contrast()}{scored} = {r.estimate:.3f} "
                     f"[{r.interval[0]:.3f}, {r.interval[1]:.3f}] over {', '.join(r.games)} ({rule}{caveat})")
    if few:
        lines += ["", f"Intervals from fewer than {criteria.min_seeds} seeds per cell are unreliable: a percentile "
                      f"bootstrap of 2-4 values cannot show the spread of the score they were drawn from, and its "
                      f"interval is too narrow (with 2 seeds a probability of improvement can read 1.00 [1.00, 1.00])."]
    return lines + [""]
