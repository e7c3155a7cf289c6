"""Is an evaluation score lower than the training episodes' for a reason in the code, or by chance?

    python bench/eval_gap.py scores RUN_DIR [RUN_DIR ...] [--episodes 100] [--window 50000] [--raw FILE]
    python bench/eval_gap.py after RUN_DIR RAW.json [RAW.json ...] [--window 50000]
    python bench/eval_gap.py metrics METRICS_JSONL --from STEP --to STEP
    python bench/eval_gap.py logs RUN_DIR [RUN_DIR ...] [--from STEP] [--window 50000]

``scores`` plays each run's saved checkpoint (a value agent) on evaluation envs at the run's
training epsilon (``algo.epsilon_end``) and at its evaluation epsilon (``loop.eval_epsilon``), and
sets both beside the training episodes the run logged over the last ``--window`` agent steps before
its checkpoint (the same policy, give or take that window's learning, at the training epsilon).
That an evaluation env plays the training env's game for the same seeds and actions is a unit test
(tests/test_envs.py); this script measures what is left: the exploration rate, and the training
episodes' bookkeeping.

With several runs, ``scores`` closes with each difference taken across runs, per game and over all
runs as a fraction of the training mean (one number per run, a t-interval over runs, and how many
runs lie above zero), and ``--raw FILE`` keeps every episode's return as JSON.

``after`` reads such raw files and the metrics of the same run trained on past its checkpoints (a
resumed run continues exactly): each checkpoint at the training epsilon against the training
episodes of the ``--window`` after it.  With the window before it, that brackets the checkpoint, so a
curve still rising cannot make the frozen policy look worse than the one that goes on learning.

``metrics`` reads one run's metrics.jsonl: its evaluation episodes against its training episodes
over a step range, with a Welch interval of the difference.  metrics.jsonl logs a window's mean
training return and its episode count, not each episode, so the training episodes' spread is
estimated from the spread of the window means (each window mean's variance is the episodes'
variance over its count), and that estimate has one degree of freedom fewer than there are windows,
which the Welch interval uses; say so where the result is quoted.

``logs`` reads many runs' metrics.jsonl: each evaluation phase from ``--from`` on against the
training episodes of the ``--window`` agent steps before it (the comparison a run's own log offers:
frozen policy at the evaluation epsilon against the learning one at the training epsilon), averaged
per run, then taken across runs per game and pooled relative to the training mean.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlsmooth.config.yaml_files import load_yaml  # noqa: E402
from rlsmooth.experiments.evaluate_run import load_saved_run  # noqa: E402
from rlsmooth.pieces.envs import make_vec_env  # noqa: E402
from rlsmooth.pieces.seeding import EVAL_CLI, SeedStreams  # noqa: E402
from rlsmooth.training.evaluation import evaluate  # noqa: E402


def welch(a_mean, a_var, a_n, b_mean, b_var, b_n, b_dof=None) -> tuple[float, float, float]:
    """Difference a - b of two means and its 95% Welch t-interval.

    ``b_dof`` is the degrees of freedom of ``b_var`` when it was not estimated from ``b_n`` single
    values (n - 1): the training episodes' variance comes from a few window means, not from each
    episode, so it has one degree of freedom fewer than there are windows."""
    from scipy import stats
    b_dof = max(b_n - 1, 1) if b_dof is None else max(b_dof, 1)
    se2 = a_var / a_n + b_var / b_n
    df = se2 ** 2 / ((a_var / a_n) ** 2 / max(a_n - 1, 1) + (b_var / b_n) ** 2 / b_dof) if se2 > 0 else 1.0
    half = float(stats.t.ppf(0.975, df)) * math.sqrt(se2)
    diff = a_mean - b_mean
    return diff, diff - half, diff + half


def across_runs(diffs) -> tuple[float, float, float, int, int]:
    """(mean, 95% t-interval low, high, runs above zero, runs) of one difference per run."""
    from scipy import stats
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan, int((d > 0).sum()), n
    half = float(stats.t.ppf(0.975, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, int((d > 0).sum()), n


def across_runs_line(label: str, diffs, fmt: str = "+.2f") -> str:
    mean, lo, hi, above, n = across_runs(diffs)
    return f"| {label} | {n} | {mean:{fmt}} [{lo:{fmt}}, {hi:{fmt}}] | {above} of {n} |"


class TrainingEpisodes(NamedTuple):
    mean: float
    variance: float   # per episode, estimated from the window means
    episodes: int
    windows: int      # log windows the estimate comes from: its degrees of freedom are windows - 1


def training_episodes(rows: list[dict], lo: int, hi: int) -> TrainingEpisodes:
    """The training episodes logged in (lo, hi]: their mean, and their per-episode variance as the window means give it."""
    windows = [(r["train/episode_return"], int(r["train/episodes"])) for r in rows
               if lo < r["step"] <= hi and "train/episode_return" in r and r.get("train/episodes")]
    if not windows:
        return TrainingEpisodes(math.nan, math.nan, 0, 0)
    means = np.array([m for m, _ in windows])
    counts = np.array([c for _, c in windows])
    n = int(counts.sum())
    mean = float((means * counts).sum() / n)
    # Var(window mean) = sigma^2 / count, so sigma^2 is estimated by the count-weighted spread of window means
    var = float((counts * (means - mean) ** 2).sum() / max(len(windows) - 1, 1)) if len(windows) > 1 else math.nan
    return TrainingEpisodes(mean, var, n, len(windows))


def minus_training(mean: float, var: float, n: int, training: TrainingEpisodes) -> tuple[float, float, float]:
    """A sample's mean minus the training episodes', with the Welch interval the window means allow."""
    return welch(mean, var, n, training.mean, training.variance, training.episodes, training.windows - 1)


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def play(cfg, state, module, epsilon: float, episodes: int) -> list[float]:
    cfg = dataclasses.replace(cfg, loop=dataclasses.replace(cfg.loop, eval_epsilon=epsilon))
    env = make_vec_env(cfg.env, SeedStreams(cfg.seed).env_seeds(EVAL_CLI, min(cfg.env.eval_num_envs, episodes)),
                       training=False)
    policy = module.load_policy(cfg, state, env, torch.device("cpu"))
    result = evaluate(env, policy, steps=cfg.loop.eval_steps, episodes=episodes, keep_states=0)
    env.close()
    return result.returns


def cmd_scores(args) -> None:
    print("| run | step | training episodes (last window, eps_train) | eval env at eps_train | eval env at eps_eval | "
          "eval(eps_train) - training [95% CI] | eval(eps_eval) - eval(eps_train) [95% CI] |")
    print("|---|---|---|---|---|---|---|")
    records = []
    for run_dir in map(Path, args.runs):
        cfg, state, module = load_saved_run(run_dir)
        step = int(state["step"])
        before = training_episodes(rows_of(run_dir / "metrics.jsonl"), step - args.window, step)
        at_train = np.array(play(cfg, state, module, cfg.algo.epsilon_end, args.episodes))
        at_eval = np.array(play(cfg, state, module, cfg.loop.eval_epsilon, args.episodes))
        d1 = minus_training(at_train.mean(), at_train.var(ddof=1), len(at_train), before)
        d2 = welch(at_eval.mean(), at_eval.var(ddof=1), len(at_eval), at_train.mean(), at_train.var(ddof=1), len(at_train))
        print(f"| {run_dir.name} | {step:,} | {before.mean:.2f} (n={before.episodes}) | {at_train.mean():.2f} ± {at_train.std(ddof=1):.2f} "
              f"(n={len(at_train)}, eps {cfg.algo.epsilon_end:g}) | {at_eval.mean():.2f} ± {at_eval.std(ddof=1):.2f} "
              f"(n={len(at_eval)}, eps {cfg.loop.eval_epsilon:g}) | {d1[0]:+.2f} [{d1[1]:+.2f}, {d1[2]:+.2f}] | "
              f"{d2[0]:+.2f} [{d2[1]:+.2f}, {d2[2]:+.2f}] |", flush=True)
        records.append({"run": run_dir.name, "game": cfg.env.game, "step": step, "window": args.window,
                        "training": {"mean": before.mean, "variance_estimate": before.variance,
                                     "episodes": before.episodes, "windows": before.windows},
                        "epsilon_train": cfg.algo.epsilon_end, "epsilon_eval": cfg.loop.eval_epsilon,
                        "returns_at_epsilon_train": at_train.tolist(), "returns_at_epsilon_eval": at_eval.tolist()})
    if args.raw:
        Path(args.raw).write_text(json.dumps(records, indent=1) + "\n")
    if len(records) > 1:
        print()
        print(across_runs_table(records))


def across_runs_table(records: list[dict]) -> str:
    """Each difference as one number per run, per game and pooled relative to the training mean."""
    def gap_train(r):
        return float(np.mean(r["returns_at_epsilon_train"])) - r["training"]["mean"]

    def gap_eps(r):
        return float(np.mean(r["returns_at_epsilon_eval"])) - float(np.mean(r["returns_at_epsilon_train"]))

    lines = ["| across runs | runs | mean [95% t-interval over runs] | runs above 0 |", "|---|---|---|---|"]
    for name, gap in (("eval(eps_train) - training", gap_train), ("eval(eps_eval) - eval(eps_train)", gap_eps)):
        for game in sorted({r["game"] for r in records}):
            lines.append(across_runs_line(f"{name}, {game}", [gap(r) for r in records if r["game"] == game]))
        lines.append(across_runs_line(f"{name}, all runs, / training mean",
                                      [gap(r) / abs(r["training"]["mean"]) for r in records], fmt="+.3f"))
    return "\n".join(lines)


def after_line(record: dict, rows: list[dict], window: int) -> str:
    """One checkpoint at the training epsilon against the training episodes of the window after it."""
    step = record["step"]
    after = training_episodes(rows, step, step + window)
    at_train = np.asarray(record["returns_at_epsilon_train"])
    d = minus_training(at_train.mean(), at_train.var(ddof=1), len(at_train), after)
    return (f"| {record['run']} | {step:,} | {record['training']['mean']:.2f} (n={record['training']['episodes']}) | "
            f"{at_train.mean():.2f} (n={len(at_train)}) | {after.mean:.2f} (n={after.episodes}) | "
            f"{d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}] |")


def cmd_after(args) -> None:
    rows = rows_of(Path(args.run) / "metrics.jsonl")
    print(f"| run | checkpoint | training episodes before | checkpoint at eps_train | training episodes in the {args.window:,} "
          "agent steps after | eval(eps_train) - training after [95% CI] |")
    print("|---|---|---|---|---|---|")
    for raw in args.raw:
        for record in json.loads(Path(raw).read_text()):
            print(after_line(record, rows, args.window))


def cmd_metrics(args) -> None:
    rows = rows_of(Path(args.metrics))
    evals = [r for r in rows if args.lo <= r["step"] <= args.hi and r.get("eval/episodes")]
    if not evals:
        raise SystemExit(f"no evaluation in [{args.lo}, {args.hi}]")
    n = sum(int(r["eval/episodes"]) for r in evals)
    mean = sum(r["eval/episode_return"] * r["eval/episodes"] for r in evals) / n
    # pooled variance of the phases' episodes: within-phase (np.std is the population std) plus between-phase
    ss = sum(r["eval/episodes"] * (r["eval/episode_return_std"] ** 2 + (r["eval/episode_return"] - mean) ** 2) for r in evals)
    var = ss / max(n - 1, 1)
    training = training_episodes(rows, args.lo, args.hi)
    diff, lo, hi = minus_training(mean, var, n, training)
    print(f"evaluation episodes at steps {[r['step'] for r in evals]}: {mean:.2f} (sd {math.sqrt(var):.2f}, n={n})")
    print(f"training episodes in ({args.lo:,}, {args.hi:,}]: {training.mean:.2f} (sd {math.sqrt(training.variance):.2f} "
          f"estimated from {training.windows} window means, n={training.episodes})")
    print(f"evaluation - training: {diff:+.2f} [{lo:+.2f}, {hi:+.2f}] (95% Welch)")


def log_gaps(rows: list[dict], start: int, window: int) -> list[tuple[float, float]]:
    """(evaluation mean - training mean, training mean) for each evaluation phase at or after ``start``,
    against the training episodes of the ``window`` agent steps before it."""
    gaps = []
    for row in rows:
        if row["step"] >= start and row.get("eval/episodes"):
            training = training_episodes(rows, row["step"] - window, row["step"])
            if training.episodes:
                gaps.append((row["eval/episode_return"] - training.mean, training.mean))
    return gaps


def cmd_logs(args) -> None:
    print(f"| run | game | evaluations | mean of (evaluation - training of the {args.window:,} agent steps before) | "
          "mean training return |")
    print("|---|---|---|---|---|")
    per_run = []
    for run_dir in map(Path, args.runs):
        game = load_yaml(run_dir / "config.yaml")["env"]["game"]
        gaps = log_gaps(rows_of(run_dir / "metrics.jsonl"), args.start, args.window)
        if not gaps:
            continue
        gap, training = float(np.mean([g for g, _ in gaps])), float(np.mean([t for _, t in gaps]))
        per_run.append((game, gap, training))
        print(f"| {run_dir.name} | {game} | {len(gaps)} | {gap:+.2f} | {training:.2f} |")
    print()
    print("| across runs | runs | mean [95% t-interval over runs] | runs above 0 |")
    print("|---|---|---|---|")
    for game in sorted({g for g, _, _ in per_run}):
        print(across_runs_line(f"evaluation - training, {game}", [d for g, d, _ in per_run if g == game]))
    print(across_runs_line("evaluation - training, all runs, / training mean",
                           [d / abs(t) for _, d, t in per_run], fmt="+.3f"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("scores")
    p.add_argument("runs", nargs="+")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--window", type=int, default=50_000, help="agent steps of training episodes before the checkpoint")
    p.add_argument("--raw", help="write every episode's return, and each run's training episodes, to this JSON file")
    p.set_defaults(func=cmd_scores)
    p = sub.add_parser("after")
    p.add_argument("run", help="the run trained on past the checkpoints that the raw files scored")
    p.add_argument("raw", nargs="+", help="raw JSON files written by scores --raw")
    p.add_argument("--window", type=int, default=50_000, help="agent steps of training episodes after each checkpoint")
    p.set_defaults(func=cmd_after)
    p = sub.add_parser("metrics")
    p.add_argument("metrics")
    p.add_argument("--from", dest="lo", type=int, required=True)
    p.add_argument("--to", dest="hi", type=int, required=True)
    p.set_defaults(func=cmd_metrics)
    p = sub.add_parser("logs")
    p.add_argument("runs", nargs="+")
    p.add_argument("--from", dest="start", type=int, default=0, help="the first evaluation step counted")
    p.add_argument("--window", type=int, default=50_000, help="agent steps of training episodes before each evaluation")
    p.set_defaults(func=cmd_logs)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
