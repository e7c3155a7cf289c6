"""bench/eval_gap.py: its across-runs summary against scipy's own one-sample t-interval."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "eval_gap.py"


@pytest.fixture(scope="module")
def eval_gap():
    spec = importlib.util.spec_from_file_location("eval_gap", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_across_runs_matches_a_one_sample_t_interval(eval_gap):
    diffs = [1.5, -0.25, 3.0, 0.75, 2.0, -1.0]
    mean, lo, hi, above, n = eval_gap.across_runs(diffs)
    ci = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert mean == pytest.approx(np.mean(diffs))
    assert (lo, hi) == pytest.approx((ci.low, ci.high))
    assert (above, n) == (4, 6)


def test_across_runs_of_one_run_has_no_interval(eval_gap):
    mean, lo, hi, above, n = eval_gap.across_runs([-2.0])
    assert mean == -2.0 and math.isnan(lo) and math.isnan(hi) and (above, n) == (0, 1)


def test_across_runs_table_takes_each_game_apart_and_pools_relative_gaps(eval_gap):
    def record(game, training, at_train, at_eval):
        return {"game": game, "training": {"mean": training}, "returns_at_epsilon_train": at_train,
                "returns_at_epsilon_eval": at_eval}
    records = [record("asterix", 10.0, [12.0, 14.0], [13.0, 13.0]),
               record("asterix", 8.0, [6.0, 8.0], [9.0, 9.0]),
               record("space_invaders", 100.0, [90.0, 110.0, 80.0], [100.0, 100.0, 100.0]),
               record("space_invaders", 200.0, [210.0], [190.0])]
    table = eval_gap.across_runs_table(records)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()[2:]}
    # per game, the plain differences: asterix +3 and -1; space_invaders -6.67 and +10
    mean, lo, hi, _, _ = eval_gap.across_runs([3.0, -1.0])
    assert rows["eval(eps_train) - training, asterix"] == (
        f"| eval(eps_train) - training, asterix | 2 | {mean:+.2f} [{lo:+.2f}, {hi:+.2f}] | 1 of 2 |")
    assert "| 1 of 2 |" in rows["eval(eps_train) - training, space_invaders"]
    # pooled over games, each run's gap over its own training mean
    relative = [3.0 / 10.0, -1.0 / 8.0, (280.0 / 3 - 100.0) / 100.0, 10.0 / 200.0]
    mean, lo, hi, above, n = eval_gap.across_runs(relative)
    assert rows["eval(eps_train) - training, all runs, / training mean"].endswith(
        f"| {n} | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] | {above} of {n} |")
    # lowering epsilon: asterix 0 (not above zero) and +2, space_invaders +6.67 and -20
    assert "| 1 of 2 |" in rows["eval(eps_eval) - eval(eps_train), asterix"]
    assert "| 1 of 2 |" in rows["eval(eps_eval) - eval(eps_train), space_invaders"]


@pytest.mark.slow
def test_pong_eval_gap_script_scores_checkpoints_between_the_training_before_and_after_them(tmp_path):
    """bench/pong_eval_gap.sh at a tiny size: one run scored at two checkpoints, at both epsilons,
    beside the training episodes on either side of each; run again, it has nothing left to do."""
    import json
    import os
    import subprocess
    import sys
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(out), RUN=str(tmp_path / "run"), SNAPSHOTS="1500 2500",
               WINDOW="1000", EPISODES="2",
               EXTRA="algo.learning_starts=1000 algo.replay_capacity=4000 loop.eval_every=1000 loop.eval_steps=400 "
                     "algo.epsilon_decay_steps=1000 loop.log_every=500 loop.checkpoint_every=500")
    script = ["bash", str(SCRIPT.parent / "pong_eval_gap.sh")]
    proc = subprocess.run(script, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for snapshot in (1500, 2500):
        (record,) = json.loads((out / f"raw_{snapshot}.json").read_text())
        assert record["step"] == snapshot and record["epsilon_train"] == 0.01 and record["epsilon_eval"] == 0.001
        assert len(record["returns_at_epsilon_train"]) == len(record["returns_at_epsilon_eval"]) == 2
        assert f"| run | {snapshot:,} |" in (out / f"scores_{snapshot}.md").read_text()
    after = (out / "after.md").read_text().splitlines()
    assert [row.split(" | ")[1] for row in after[2:]] == ["1,500", "2,500"]
    assert json.loads((out / "summary.json").read_text())["step"] == 3500
    log = (out / "log.txt").read_text()
    assert log.count("training") == 3 and log.count("scoring") == 2
    proc = subprocess.run(script, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and (out / "log.txt").read_text().count("training") == 3


def test_welch_matches_scipy_on_single_values_and_widens_for_a_variance_from_few_windows(eval_gap):
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, 40), rng.normal(0.0, 5.0, 12)
    diff, lo, hi = eval_gap.welch(a.mean(), a.var(ddof=1), len(a), b.mean(), b.var(ddof=1), len(b))
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(a.mean() - b.mean()) and (lo, hi) == pytest.approx((ci.low, ci.high))
    # the same variance known only from 3 window means: 2 degrees of freedom, a wider interval
    _, lo3, hi3 = eval_gap.welch(a.mean(), a.var(ddof=1), len(a), b.mean(), b.var(ddof=1), len(b), b_dof=2)
    assert lo3 < lo and hi3 > hi


def test_training_episodes_weight_window_means_by_their_episode_counts(eval_gap):
    rows = [{"step": 10, "train/episode_return": 1.0, "train/episodes": 2.0},
            {"step": 20, "train/episode_return": 4.0, "train/episodes": 1.0},
            {"step": 30, "train/episode_return": 2.0, "train/episodes": 3.0},
            {"step": 40, "train/loss": 0.5}]
    got = eval_gap.training_episodes(rows, 10, 40)   # (10, 40]: the last two windows
    assert got.mean == pytest.approx((4.0 + 6.0) / 4) and got.episodes == 4 and got.windows == 2
    # Var(window mean) = sigma^2 / count: sigma^2 = sum(count * (mean_w - mean)^2) / (windows - 1)
    assert got.variance == pytest.approx(1 * (4.0 - 2.5) ** 2 + 3 * (2.0 - 2.5) ** 2)


def test_log_gaps_set_each_evaluation_against_the_training_window_before_it(eval_gap):
    rows = [{"step": 100, "train/episode_return": 2.0, "train/episodes": 1.0},
            {"step": 200, "train/episode_return": 4.0, "train/episodes": 3.0},
            {"step": 200, "eval/episode_return": 5.0, "eval/episodes": 8.0},
            {"step": 300, "train/episode_return": 1.0, "train/episodes": 2.0},
            {"step": 400, "train/episode_return": 3.0, "train/episodes": 2.0},
            {"step": 400, "eval/episode_return": 1.0, "eval/episodes": 8.0},
            {"step": 500, "eval/episode_return": 9.0, "eval/episodes": 0.0}]   # no episode: no phase
    # window 200: the phase at 200 against (0, 200]: (2 + 12) / 4 = 3.5; at 400 against (200, 400]: 2.0
    assert eval_gap.log_gaps(rows, 0, 200) == [(5.0 - 3.5, 3.5), (1.0 - 2.0, 2.0)]
    assert eval_gap.log_gaps(rows, 300, 200) == [(1.0 - 2.0, 2.0)]
