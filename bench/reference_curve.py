"""Our Atari run against a reference DQN's published per-iteration training returns.

The reference (``results/atari_cpu/reference/dopamine_dqn_adam_mse.csv``) reports, per 250k-agent-
step iteration, the mean return of the training episodes that ended in it. The same statistic is
computed here from a run's ``metrics.jsonl`` (each logging window's mean, weighted by its episode
count), so the two curves measure one thing.

    python bench/reference_curve.py RUN_DIR GAME --out results/atari_cpu/reference
"""
from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

ITERATION = 250_000   # agent steps per reference iteration
REFERENCE = Path(__file__).resolve().parent.parent / "results/atari_cpu/reference/dopamine_dqn_adam_mse.csv"


def training_returns_per_iteration(metrics: Path) -> dict[int, tuple[float, int]]:
    """iteration -> (mean training-episode return, episodes), over whole logged windows."""
    totals: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        episodes = row.get("train/episodes") or 0
        if "train/episode_return" in row and episodes:
            total = totals[(row["step"] - 1) // ITERATION]
            total[0] += row["train/episode_return"] * episodes
            total[1] += episodes
    return {k: (t / n, int(n)) for k, (t, n) in sorted(totals.items())}


def reference_runs(game: str) -> dict[int, dict[int, float]]:
    """run -> iteration -> training return."""
    runs: dict[int, dict[int, float]] = defaultdict(dict)
    with REFERENCE.open() as f:
        for row in csv.DictReader(f):
            if row["game"] == game:
                runs[int(row["run"])][int(row["iteration"])] = float(row["train_return"])
    return dict(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("game")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    ours = training_returns_per_iteration(args.run_dir / "metrics.jsonl")
    ref = reference_runs(args.game)
    last_step = max(json.loads(line)["step"] for line in (args.run_dir / "metrics.jsonl").read_text().splitlines())
    lines = ["| agent steps | this run (episodes) | reference mean | reference runs |", "|---|---|---|---|"]
    for k, (value, episodes) in ours.items():
        values = [r[k] for r in ref.values() if k in r]
        end = min((k + 1) * ITERATION, last_step)
        lines.append(f"| {k * ITERATION // 1000}k–{end // 1000}k | {value:.1f} ({episodes}) | "
                     f"{sum(values) / len(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.game}_vs_reference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(ref.values()):
        ks = sorted(r)
        ax.plot([(k + 0.5) * ITERATION / 1e6 for k in ks], [r[k] for k in ks], color="grey", alpha=0.6,
                lw=1, label="reference DQN (Adam, MSE), 5 runs" if i == 0 else None)
    ks = sorted(ours)
    ax.plot([(k + 0.5) * ITERATION / 1e6 for k in ks], [ours[k][0] for k in ks], "o-", color="C0", lw=2,
            label=f"rlsmooth {args.run_dir.name}")
    ax.set_xlabel("agent steps (millions)")
    ax.set_ylabel("mean training-episode return per 250k steps")
    ax.set_title(f"{args.game}: training returns per iteration")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / f"{args.game}_vs_reference.png", dpi=120)


if __name__ == "__main__":
    main()
