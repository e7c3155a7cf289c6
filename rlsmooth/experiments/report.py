"""``rlsmooth compare``: per-game tables, human-normalised aggregates with stratified-bootstrap
confidence intervals (rliable), probability of improvement, learning and sigma curves.

Reads run directories (finished or still running) and sweep directories (searched for run
directories).  A run whose config or metrics file is missing or malformed is reported by name
and skipped; the report lists every run it used.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from rlsmooth.errors import ConfigError
from rlsmooth.pieces.scores import REFERENCE_SCORES, human_normalized

CONFIDENCE = 0.95


@dataclass
class Run:
    path: Path
    agent: str
    suite: str
    game: str
    seed: int
    variant: str
    finished: bool
    last_step: int
    eval_curve: list[tuple[int, float]]
    sigma_curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    frames_per_step: int = 1

    @property
    def final_return(self) -> float:
        return self.eval_curve[-1][1]


def variant_label(config: dict, axes: dict | None = None) -> str:
    """What a run changes, from the resolved layer names its config recorded (``meta.layers``), so that
    ``[-2]`` and ``[fc]`` on one network are one variant; sweep axes other than game, seed and variant
    (e.g. a network size) are appended.  No SN and no rho scaling reads 'baseline'."""
    layers = (config.get("meta") or {}).get("layers") or {}
    spectral, optim = config.get("spectral") or {}, config.get("optim") or {}
    parts = []
    if layers.get("normalised"):
        options = [o for o, on in (("only_shrink", spectral.get("only_shrink")),
                                   (f"k={spectral.get('k')}", spectral.get("k", 1.0) != 1.0),
                                   ("operator", spectral.get("conv_norm") == "operator")) if on]
        parts.append(f"sn[{','.join(layers['normalised'] + options)}]")
    if optim.get("rho_scaling", "none") != "none":
        form = "" if optim.get("rho_only_shrink", True) else ",unclamped"
        parts.append(f"rho={optim['rho_scaling']}[{','.join(layers.get('rho_layers') or [])}{form}]")
    label = "+".join(parts) or "baseline"
    extra = [f"{k}={v}" for k, v in (axes or {}).items() if k not in ("game", "seed", "variant")]
    return " ".join([label, *extra])


def frames_per_step(config: dict) -> int:
    """Emulator frames per agent step: the run's frame skip on Atari, 1 elsewhere."""
    env = config.get("env") or {}
    return int(env.get("frame_skip", 4)) if env.get("suite") == "atari" else 1


def find_run_dirs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    found, problems = [], []
    for path in paths:
        if not path.exists():
            problems.append(f"{path}: not found")
        elif (path / "config.yaml").is_file():
            found.append(path)
        else:
            runs = sorted(p.parent for p in path.rglob("config.yaml"))
            if not runs:
                problems.append(f"{path}: no run directories inside")
            found.extend(runs)
    return sorted(set(found)), problems


def load_run(path: Path) -> Run:
    """Raise ValueError with the reason when the run cannot be used."""
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
        env = config["env"]
        agent, suite, game, seed = config["agent"], env["suite"], env["game"], int(config.get("seed", 0))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable config.yaml ({type(exc).__name__})") from None
    metrics_path = path / "metrics.jsonl"
    if not metrics_path.is_file():
        raise ValueError("no metrics.jsonl")
    lines = metrics_path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            int(record["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if number == len(lines):   # a run still being written may end in a partial line
                break
            raise ValueError(f"malformed metrics.jsonl line {number}") from None
        records.append(record)
    curve = [(int(r["step"]), float(r["eval/episode_return"])) for r in records if "eval/episode_return" in r]
    if not curve:
        raise ValueError("no evaluation yet")
    sigmas: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for key, value in r.items():
            if key.startswith("spectral/sigma/"):
                sigmas.setdefault(key[len("spectral/sigma/"):], []).append((int(r["step"]), float(value)))
    cell = path / "sweep_cell.json"
    axes = {}
    if cell.is_file():
        try:
            axes = json.loads(cell.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("unreadable sweep_cell.json") from None
        if not isinstance(axes, dict):
            raise ValueError("sweep_cell.json is not a mapping")
    return Run(path, agent, suite, game, seed, variant_label(config, axes), (path / "summary.json").is_file(),
               max(int(r["step"]) for r in records), curve, sigmas, frames_per_step(config))


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean over seeds; NaN for a single seed."""
    from scipy import stats
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


def score_matrices(runs: list[Run], games: list[str], variants: list[str], normalise: bool) -> dict[str, np.ndarray]:
    """{variant: (seeds, games)} final scores; seeds cut to the smallest count so matrices are full."""
    groups = {(r.variant, r.game): sorted((x for x in runs if x.variant == r.variant and x.game == r.game),
                                          key=lambda x: x.seed) for r in runs}
    n = min(len(groups.get((v, g), [])) for v in variants for g in games)
    out = {}
    for v in variants:
        matrix = np.zeros((n, len(games)))
        for j, g in enumerate(games):
            for i, run in enumerate(groups[(v, g)][:n]):
                matrix[i, j] = human_normalized(g, run.final_return) if normalise else run.final_return
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


def improvement_probabilities(matrices: dict[str, np.ndarray], baseline: str, reps: int,
                              seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """P(variant > baseline) averaged over games (Agarwal et al. 2021), with bootstrap CI."""
    from rliable import library as rly
    from rliable import metrics
    np.random.seed(seed)
    pairs = {v: (m, matrices[baseline]) for v, m in matrices.items() if v != baseline}
    if not pairs:
        return {}
    point, interval = rly.get_interval_estimates(pairs, metrics.probability_of_improvement, reps=reps,
                                                 confidence_interval_size=CONFIDENCE)
    return {v: (float(point[v]), float(np.ravel(interval[v])[0]), float(np.ravel(interval[v])[1])) for v in pairs}


def _aligned(curves: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Steps present in every curve, and a (runs, steps) matrix of values."""
    common = sorted(set.intersection(*(set(s for s, _ in c) for c in curves)))
    values = np.array([[dict(c)[s] for s in common] for c in curves]) if common else np.zeros((len(curves), 0))
    return np.array(common), values


def plot_curves(runs: list[Run], games: list[str], variants: list[str], out: Path, frames_per_step: int | None,
                sigma: bool) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for g in games:
        if sigma:
            layers = sorted({layer for r in runs if r.game == g for layer in r.sigma_curves})
            panels.extend((g, layer) for layer in layers)
        else:
            panels.append((g, None))
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (game, layer) in zip(axes.flat, panels):
        for v in variants:
            group = [r for r in runs if r.game == game and r.variant == v]
            curves = [r.sigma_curves.get(layer, []) if sigma else r.eval_curve for r in group]
            curves = [c for c in curves if c]
            if not curves:
                continue
            steps, values = _aligned(curves)
            if not len(steps):
                continue
            mean = values.mean(0)
            line, = ax.plot(steps, mean, label=f"{v} (n={len(curves)})", color=f"C{variants.index(v) % 10}")
            if len(curves) > 1:
                half = 1.96 * values.std(0, ddof=1) / math.sqrt(len(curves))
                ax.fill_between(steps, mean - half, mean + half, color=line.get_color(), alpha=0.2)
        ax.set_title(f"{game}: sigma({layer})" if sigma else game)
        xlabel = "agent steps" + (f" (x{frames_per_step} frames)" if frames_per_step else "")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("sigma of raw weight" if sigma else "evaluation return")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(("spectral norms" if sigma else "learning curves") + ": mean over seeds, band = 95% normal CI")
    fig.tight_layout()
    path = out / ("sigma_curves.png" if sigma else "learning_curves.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def compare(paths: list[Path], out: Path, baseline: str = "baseline", reps: int = 2000) -> dict:
    run_dirs, problems = find_run_dirs(paths)
    runs: list[Run] = []
    skipped: list[str] = list(problems)
    for d in run_dirs:
        try:
            runs.append(load_run(d))
        except ValueError as exc:
            skipped.append(f"{d}: {exc}")
    for s in skipped:
        print(f"skipped {s}")
    if not runs:
        raise ConfigError("no usable runs found in " + ", ".join(map(str, paths)))
    if len({r.agent for r in runs}) > 1:
        for r in runs:
            r.variant = f"{r.agent}:{r.variant}"
        baseline_candidates = sorted({r.variant for r in runs if r.variant.endswith(":" + baseline)})
        baseline = baseline_candidates[0] if baseline_candidates else baseline
    out.mkdir(parents=True, exist_ok=True)
    games = sorted({r.game for r in runs})
    variants = sorted({r.variant for r in runs}, key=lambda v: (v != baseline, v))

    with open(out / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run_dir", "agent", "suite", "game", "variant", "seed", "last_step", "finished",
                         "eval_step", "final_eval_return", "human_normalized"])
        for r in sorted(runs, key=lambda r: (r.game, r.variant, r.seed)):
            hns = human_normalized(r.game, r.final_return) if r.suite == "atari" else math.nan
            writer.writerow([r.path, r.agent, r.suite, r.game, r.variant, r.seed, r.last_step, r.finished,
                             r.eval_curve[-1][0], r.final_return, "" if math.isnan(hns) else hns])

    lines = ["# rlsmooth comparison report", "",
             f"{len(runs)} runs used, {len(skipped)} skipped. Final score of a run = its last evaluation "
             "(mean return over that evaluation phase's complete episodes).", ""]
    lines += ["## Per game: final evaluation return over seeds", "",
              "| game | variant | seeds | mean | 95% CI (t) | eval step(s) |", "|---|---|---|---|---|---|"]
    table = {}
    for g in games:
        for v in variants:
            group = [r for r in runs if r.game == g and r.variant == v]
            if not group:
                continue
            values = np.array([r.final_return for r in group])
            lo, hi = t_interval(values)
            steps = sorted({r.eval_curve[-1][0] for r in group})
            table[(g, v)] = (len(group), float(values.mean()), lo, hi)
            lines.append(f"| {g} | {v} | {len(group)} | {values.mean():.2f} | [{_fmt(lo)}, {_fmt(hi)}] | "
                         f"{', '.join(map(str, steps))} |")
    lines.append("")

    complete = [g for g in games if all(any(r.game == g and r.variant == v for r in runs) for v in variants)]
    result = {"table": table, "aggregates": {}, "improvement": {}}
    if complete and baseline in variants:
        matrices = score_matrices(runs, complete, variants, normalise=False)
        seeds = min(len(m) for m in matrices.values())
        poi = improvement_probabilities(matrices, baseline, reps)
        if seeds < 2:   # resampling one seed gives back the point: no interval exists
            poi = {v: (p, math.nan, math.nan) for v, (p, _, _) in poi.items()}
        result["improvement"] = poi
        if poi:
            lines += [f"## Probability of improvement over `{baseline}`", "",
                      f"P(X > Y) of final scores, averaged over {len(complete)} game(s) "
                      f"(Agarwal et al. 2021); stratified-bootstrap 95% CI over {seeds} seed(s) per cell"
                      + (" (one seed: no interval)" if seeds < 2 else "") + ".", "",
                      "| variant | P(improves) | 95% CI |", "|---|---|---|"]
            lines += [f"| {v} | {p:.2f} | [{_fmt(lo)}, {_fmt(hi)}] |" for v, (p, lo, hi) in poi.items()] + [""]
    atari = [g for g in complete if g in REFERENCE_SCORES and all(r.suite == "atari" for r in runs if r.game == g)]
    if atari:
        agg = aggregates(score_matrices(runs, atari, variants, normalise=True), reps)
        result["aggregates"] = agg
        lines += ["## Human-normalised aggregates", "",
                  f"Over {len(atari)} Atari game(s): {', '.join(atari)}. Reference scores: rlsmooth/scores.py. "
                  "95% stratified-bootstrap CIs (rliable).", "",
                  "| variant | median | IQM | mean |", "|---|---|---|---|"]
        for v, m in agg.items():
            cells = [f"{m[k][0]:.3f} [{m[k][1]:.3f}, {m[k][2]:.3f}]" for k in ("median", "iqm", "mean")]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
    elif runs and all(r.suite != "atari" for r in runs):
        lines += ["No human-normalised aggregates: human reference scores exist for Atari games only.", ""]

    skips = {r.frames_per_step for r in runs}
    frames = skips.pop() if len(skips) == 1 and all(r.suite == "atari" for r in runs) else None
    plots = [p for p in (plot_curves(runs, games, variants, out, frames, sigma=False),
                         plot_curves(runs, games, variants, out, frames, sigma=True)) if p]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    lines += ["## Runs used", "", "| run | game | variant | seed | last step | finished |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.path} | {r.game} | {r.variant} | {r.seed} | {r.last_step} | {'yes' if r.finished else 'no'} |"
              for r in sorted(runs, key=lambda r: (r.game, r.variant, r.seed))]
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- {s}" for s in skipped]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"report: {out / 'report.md'} ({len(runs)} runs, {len(skipped)} skipped)")
    return result
