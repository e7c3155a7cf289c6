"""compare: per-game tables, aggregates against independent computations, labels and plots."""
import itertools
import json
import math

import numpy as np
import pytest
import yaml

from conftest import run_cli
from rlsmooth.experiments.report import compare
from rlsmooth.pieces.scores import REFERENCE_SCORES, human_normalized


def test_reference_scores_table():
    assert len(REFERENCE_SCORES) == 57
    assert REFERENCE_SCORES["pong"] == (-20.7, 14.6)
    assert REFERENCE_SCORES["breakout"] == (1.7, 30.5)
    assert REFERENCE_SCORES["montezuma_revenge"] == (0.0, 4753.3)
    assert human_normalized("pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("breakout", 1.7) == pytest.approx(0.0)
    assert math.isnan(human_normalized("chain", 1.0))


def synthetic_run(root, name, game, variant, seed, returns, suite="atari", sigma=None, selector=None,
                  frame_skip=4, sweep_label=True, optim=None):
    """A run directory as training writes it; ``variant`` 'sn_fc' normalises fc (selected by ``selector``);
    with ``sweep_label`` its sweep_cell.json names the variant, as a sweep's cells do."""
    d = root / name
    d.mkdir(parents=True)
    normalised = ["fc"] if variant == "sn_fc" else []
    config = {"agent": "c51", "seed": seed, "env": {"suite": suite, "game": game, "frame_skip": frame_skip},
              "spectral": {"layers": selector or normalised or "none"}, "optim": optim or {"name": "adam", "lr": 2.5e-4},
              "meta": {"layers": {"normalised": normalised, "tracked": [], "rho_layers": []}}}
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    (d / "sweep_cell.json").write_text(json.dumps({"variant": variant, "seed": seed} if sweep_label else {"seed": seed}))
    with open(d / "metrics.jsonl", "w") as f:
        for i, r in enumerate(returns):
            rec = {"step": 1000 * (i + 1), "eval/episode_return": r}
            if sigma is not None:
                rec["spectral/sigma/fc"] = sigma + i
            f.write(json.dumps(rec) + "\n")
    return d


def test_report_aggregates_against_independent_computation(tmp_path):
    rng = np.random.default_rng(0)
    games = ["pong", "breakout", "seaquest", "asterix"]
    finals = {}
    for v in ("baseline", "sn_fc"):
        for g in games:
            for seed in range(3):
                score = float(rng.uniform(REFERENCE_SCORES[g][0], REFERENCE_SCORES[g][1]))
                finals[(v, g, seed)] = score
                synthetic_run(tmp_path / "runs", f"{g}-{v}-{seed}", g, v, seed, [0.0, score], sigma=2.0)
    # malformed and incomplete runs are reported and skipped
    bad = synthetic_run(tmp_path / "runs", "bad", "pong", "baseline", 9, [1.0])
    (bad / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    (tmp_path / "runs" / "empty").mkdir()
    (tmp_path / "runs" / "empty" / "config.yaml").write_text("agent: c51\n")

    result = compare([tmp_path / "runs"], tmp_path / "rep", reps=500)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "malformed metrics.jsonl line 2" in text and "empty: unreadable config.yaml" in text
    # per-game mean and t interval over seeds
    from scipy import stats
    vals = np.array([finals[("sn_fc", "pong", s)] for s in range(3)])
    n, mean, lo, hi = result["table"][("pong", "sn_fc")]
    half = stats.t.ppf(0.975, 2) * vals.std(ddof=1) / np.sqrt(3)
    assert n == 3 and mean == pytest.approx(vals.mean()) and (lo, hi) == pytest.approx((mean - half, mean + half))
    # aggregates of human-normalised scores
    for v in ("baseline", "sn_fc"):
        hns = np.array([[human_normalized(g, finals[(v, g, s)]) for g in games] for s in range(3)])
        agg = result["aggregates"][v]
        assert agg["mean"][0] == pytest.approx(hns.mean())
        assert agg["median"][0] == pytest.approx(np.median(hns.mean(axis=0)))
        flat = np.sort(hns.ravel())
        assert agg["iqm"][0] == pytest.approx(flat[3:9].mean())   # middle 50% of 12 scores
        for name in ("mean", "median", "iqm"):
            point, low, high = agg[name]
            assert low <= point <= high
    # probability of improvement: P(X > Y) over seed pairs, averaged over games
    poi = np.mean([np.mean([[1.0 if finals[("sn_fc", g, i)] > finals[("baseline", g, j)] else
                             0.5 if finals[("sn_fc", g, i)] == finals[("baseline", g, j)] else 0.0
                             for j in range(3)] for i in range(3)]) for g in games])
    assert result["improvement"]["sn_fc"][0] == pytest.approx(poi)
    csv_text = (tmp_path / "rep" / "scores.csv").read_text()
    assert csv_text.count("\n") == 1 + 24


def test_variants_grouped_by_resolved_layers_and_frames_from_frame_skip(tmp_path):
    # the same layer chosen as [-2] in one run and [fc] in another is one variant
    synthetic_run(tmp_path / "r", "a", "pong", "sn_fc", 0, [1.0, 2.0], selector=[-2], frame_skip=3, sweep_label=False)
    synthetic_run(tmp_path / "r", "b", "pong", "sn_fc", 1, [1.0, 4.0], selector=["fc"], frame_skip=3, sweep_label=False)
    synthetic_run(tmp_path / "r", "c", "pong", "baseline", 0, [1.0, 1.0], frame_skip=3, sweep_label=False)
    result = compare([tmp_path / "r"], tmp_path / "rep", reps=100)
    assert result["table"][("pong", "sn[fc]")][:2] == (2, pytest.approx(3.0))
    from rlsmooth.experiments.report import load_run, variant_label
    assert load_run(tmp_path / "r" / "a").frames_per_step == 3
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "sn[-2]" not in text
    # rho scaling labels say the clamped form and the resolved layers; extra sweep axes are appended
    config = {"optim": {"rho_scaling": "lr+grad", "rho_only_shrink": False, "rho_layers": [-2]},
              "meta": {"layers": {"normalised": [], "rho_layers": ["fc"]}}}
    assert variant_label(config, {"net": "c8_h32", "seed": 0}) == "rho=lr+grad[fc,unclamped] net=c8_h32"


def test_identical_seeds_give_zero_width_interval(tmp_path):
    for seed in range(3):
        synthetic_run(tmp_path / "r", f"s{seed}", "pong", "baseline", seed, [5.0])
    result = compare([tmp_path / "r"], tmp_path / "rep", reps=200)
    assert result["table"][("pong", "baseline")][2:] == pytest.approx((5.0, 5.0))
    point, lo, hi = result["aggregates"]["baseline"]["mean"]
    assert lo == pytest.approx(point) and hi == pytest.approx(point)


def test_compare_with_no_runs_is_one_line_error(tmp_path):
    proc = run_cli("compare", tmp_path, "--out", tmp_path / "rep")
    assert proc.returncode == 2 and "no usable runs" in proc.stderr


def test_suites_are_never_averaged_into_one_row(tmp_path):
    synthetic_run(tmp_path / "r", "a", "breakout", "baseline", 0, [1.0, 10.0], suite="atari")
    synthetic_run(tmp_path / "r", "m", "breakout", "baseline", 0, [1.0, 50.0], suite="minatar")
    result = compare([tmp_path / "r"], tmp_path / "rep", reps=100)
    assert result["table"][("atari/breakout", "baseline")][:2] == (1, pytest.approx(10.0))
    assert result["table"][("minatar/breakout", "baseline")][:2] == (1, pytest.approx(50.0))


def test_non_finite_evaluations_and_steps_are_marked_not_averaged(tmp_path):
    synthetic_run(tmp_path / "r", "a", "pong", "baseline", 0, [1.0, 3.0])
    b = synthetic_run(tmp_path / "r", "b", "pong", "baseline", 1, [2.0, 5.0])
    with open(b / "metrics.jsonl", "a") as f:
        f.write('{"step": 3000, "eval/episode_return": NaN}\n{"step": 4000, "eval/episode_return": Infinity}\n')
    c = synthetic_run(tmp_path / "r", "c", "pong", "baseline", 2, [2.0])
    (c / "metrics.jsonl").write_text('{"step": Infinity, "eval/episode_return": 1.0}\n{"step": 5}\n')
    result = compare([tmp_path / "r"], tmp_path / "rep", reps=100)
    n, mean, lo, hi = result["table"][("pong", "baseline")]
    assert n == 2 and mean == pytest.approx(4.0) and math.isfinite(lo)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "non-finite return were left out" in text and "line 1: 'step' must be an integer" in text


def test_distinct_seeds_are_counted_and_repeats_flagged(tmp_path):
    for i in range(4):
        synthetic_run(tmp_path / "r", f"s{i}", "pong", "baseline", 0, [float(i)])
    result = compare([tmp_path / "r"], tmp_path / "rep", reps=100)
    cell = result["cells"][("pong", "baseline")]
    assert cell.runs == 4 and cell.seeds == 1 and cell.repeated_seeds == [0]
    assert "repeated seeds [0]: 4 runs, 1 seeds" in (tmp_path / "rep" / "report.md").read_text()


def test_runs_that_stopped_at_different_steps_are_compared_where_all_arrived(tmp_path):
    synthetic_run(tmp_path / "r", "long", "pong", "baseline", 0, [1.0, 2.0, 3.0, 9.0])
    synthetic_run(tmp_path / "r", "short", "pong", "sn_fc", 0, [1.0, 2.0])
    result = compare([tmp_path / "r"], tmp_path / "rep", reps=100, last_n=2)
    assert result["comparison_steps"]["pong"] == 2000
    base = result["cells"][("pong", "baseline")]
    assert base.means["final"][0] == pytest.approx(2.0) and base.steps == [2000]
    assert base.means["last_n"][0] == pytest.approx(1.5)
    assert base.means["auc"][0] == pytest.approx(1.5)   # trapezoid of (1000, 1) -> (2000, 2) over 1000 steps
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "stopped at different steps" in text and "compared at step 2,000" in text
    assert (tmp_path / "rep" / "learning_curves.png").stat().st_size > 5000   # both curves drawn


def test_last_n_auc_intervals_and_heatmap_of_an_extra_axis(tmp_path):
    from scipy import stats
    rng = np.random.default_rng(1)
    finals = {}
    for lr in ("0.0001", "0.001"):
        for v in ("baseline", "sn_fc"):
            for seed in range(3):
                curve = list(rng.uniform(0, 10, size=5))
                finals[(lr, v, seed)] = curve
                d = synthetic_run(tmp_path / "r", f"{lr}-{v}-{seed}", "asterix", v, seed, curve, suite="minatar")
                (d / "sweep_cell.json").write_text(json.dumps({"variant": v, "seed": seed, "optim.lr": lr}))
    result = compare([tmp_path / "r"], tmp_path / "rep", reps=200, last_n=3)
    cell = result["cells"][("asterix", "sn_fc optim.lr=0.001")]
    last3 = np.array([np.mean(finals[("0.001", "sn_fc", s)][-3:]) for s in range(3)])
    half = stats.t.ppf(0.975, 2) * last3.std(ddof=1) / np.sqrt(3)
    assert cell.means["last_n"] == pytest.approx((last3.mean(), last3.mean() - half, last3.mean() + half))
    auc = np.array([np.trapezoid(finals[("0.001", "sn_fc", s)], np.arange(1, 6) * 1000) / 4000 for s in range(3)])
    assert cell.means["auc"][0] == pytest.approx(auc.mean())
    # improvement is computed against the baseline with the same learning rate
    assert set(result["improvement"]) == {"sn_fc optim.lr=0.0001", "sn_fc optim.lr=0.001"}
    # ... on final scores and on last-3 means, each P(X > Y) over seed pairs
    for metric, score in (("improvement", lambda c: c[-1]), ("improvement_last_n", lambda c: np.mean(c[-3:]))):
        x = [score(finals[("0.001", "sn_fc", i)]) for i in range(3)]
        y = [score(finals[("0.001", "baseline", j)]) for j in range(3)]
        expected = np.mean([[1.0 if a > b else 0.5 if a == b else 0.0 for b in y] for a in x])
        assert result[metric]["sn_fc optim.lr=0.001"][0] == pytest.approx(expected)
    assert "P(improves), last-3 mean" in (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "heatmap.png").stat().st_size > 5000
    assert "![heatmap](heatmap.png)" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.parametrize("rates", [(2.5e-4, 2.5e-3), (1e-4, 1e-3)], ids=["default swept", "default not swept"])
def test_the_heat_map_marks_the_column_of_the_presets_own_setting(tmp_path, rates):
    for lr in rates:
        for v in ("baseline", "sn_fc"):
            for seed in range(2):
                d = synthetic_run(tmp_path / "r", f"{lr}-{v}-{seed}", "asterix", v, seed, [1.0, 2.0 + seed], suite="minatar",
                                  optim={"name": "adam", "lr": lr})
                (d / "sweep_cell.json").write_text(json.dumps({"variant": v, "seed": seed, "lr": str(lr)}))
    compare([tmp_path / "r"], tmp_path / "rep", reps=50)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "heatmap.png").is_file()
    if rates[0] == 2.5e-4:   # minatar_c51.yaml sets optim.lr: 2.5e-4
        assert "the column marked (default) holds the preset's own setting (minatar_c51.yaml: optim.lr=0.00025)" in text
    else:
        assert "no column holds the preset's own setting (minatar_c51.yaml: optim.lr=0.00025)" in text


def test_compare_without_the_report_extra_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    import importlib.util
    from rlsmooth.errors import ConfigError
    synthetic_run(tmp_path / "r", "a", "pong", "baseline", 0, [1.0])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rliable" else real(name, *a))
    with pytest.raises(ConfigError, match=r"report extra \(missing: rliable\)"):
        compare([tmp_path / "r"], tmp_path / "rep")
    assert not (tmp_path / "rep").exists()


def test_a_variant_is_what_its_runs_changed_never_merged_into_baseline(tmp_path):
    # a sweep's variant axis changing the optimiser only: its label is the variant
    for seed in (0, 1):
        synthetic_run(tmp_path / "s", f"b{seed}", "pong", "baseline", seed, [1.0, 2.0])
        synthetic_run(tmp_path / "s", f"x{seed}", "pong", "boom", seed, [0.0, 0.0], optim={"name": "adam", "lr": 1e30})
    result = compare([tmp_path / "s"], tmp_path / "rep", reps=100)
    assert result["table"][("pong", "baseline")][0] == 2 and result["table"][("pong", "boom")][0] == 2
    assert "repeated" not in (tmp_path / "rep" / "report.md").read_text()
    # runs without a sweep label whose configs differ in more than the seed are told apart by the keys
    for seed in (0, 1):
        synthetic_run(tmp_path / "u", f"a{seed}", "pong", "baseline", seed, [1.0, 2.0], sweep_label=False)
        synthetic_run(tmp_path / "u", f"e{seed}", "pong", "baseline", seed, [3.0, 3.0], sweep_label=False,
                      optim={"name": "adam", "lr": 2.5e-4, "eps": 1e-8})
        synthetic_run(tmp_path / "u", f"r{seed}", "pong", "baseline", seed, [3.0, 3.0], sweep_label=False,
                      optim={"name": "rmsprop", "lr": 2.5e-4})
    result = compare([tmp_path / "u"], tmp_path / "rep2", reps=100)
    variants = sorted(v for _, v in result["table"])
    assert len(variants) == 3 and all(result["table"][("pong", v)][0] == 2 for v in variants), variants
    assert any("optim.name=rmsprop" in v for v in variants) and any("optim.eps=1e-08" in v for v in variants)
    # the seed, the budget and how a run was logged do not make a variant
    for seed, steps in ((0, 1000), (1, 2000)):
        d = synthetic_run(tmp_path / "v", f"s{seed}", "pong", "baseline", seed, [1.0, 2.0], sweep_label=False)
        config = yaml.safe_load((d / "config.yaml").read_text())
        config["loop"] = {"total_steps": steps, "log_every": 10 * steps}
        (d / "config.yaml").write_text(yaml.safe_dump(config))
    assert set(compare([tmp_path / "v"], tmp_path / "rep3", reps=100)["table"]) == {("pong", "baseline")}


@pytest.mark.parametrize("break_it, reason", [
    (lambda d: (d / "metrics.jsonl").write_text('{"step": 99999999999999999999999, "eval/episode_return": 1.0}\n'),
     "'step' must be an integer"),
    (lambda d: (d / "metrics.jsonl").write_text('{"step": 1000, "eval/episode_return": 1.0}\n'
                                                '{"step": Infinity, "eval/episode_return": 5.0}\n'),
     "'step' must be an integer"),
    (lambda d: (d / "config.yaml").write_text((d / "config.yaml").read_text().replace("game: pong", "game: [chain]")),
     "env.game must be a name"),
    (lambda d: (d / "config.yaml").write_text(yaml.safe_dump({**yaml.safe_load((d / "config.yaml").read_text()),
                                                              "meta": {"layers": {"normalised": [1]}}})),
     "meta.layers must map"),
])
def test_hostile_run_files_are_a_marked_row_never_a_traceback_or_a_partial_report(tmp_path, break_it, reason):
    from conftest import assert_one_line_error, run_cli
    synthetic_run(tmp_path / "r", "good", "pong", "baseline", 0, [1.0, 2.0])
    break_it(synthetic_run(tmp_path / "r", "bad", "pong", "baseline", 1, [1.0, 2.0]))
    proc = run_cli("compare", tmp_path / "r", "--out", tmp_path / "rep", "--reps", "50")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert reason in proc.stdout and reason in (tmp_path / "rep" / "report.md").read_text()
    alone = tmp_path / "alone"
    (tmp_path / "r" / "bad").rename(alone)
    assert_one_line_error(run_cli("compare", alone, "--out", tmp_path / "rep2"), "no usable runs")
    assert not (tmp_path / "rep2").exists()


def test_treatment_axes_are_compared_with_the_baseline_and_condition_axes_within(tmp_path):
    rng = np.random.default_rng(0)
    for lr in ("1e-3", "1e-4"):
        for variant, opt in (("baseline", "baseline"), ("sn_fc", "baseline"), ("baseline", "eps8")):
            for seed in range(3):
                d = synthetic_run(tmp_path / "r", f"{lr}-{variant}-{opt}-{seed}", "asterix", variant, seed,
                                  list(rng.uniform(0, 10, size=3)), suite="minatar",
                                  optim={"name": "adam", "lr": float(lr), "eps": 1e-8 if opt == "eps8" else 1e-4})
                (d / "sweep_cell.json").write_text(json.dumps({"variant": variant, "opt": opt, "lr": lr, "seed": seed,
                                                               "_treatments": ["opt"]}))
    result = compare([tmp_path / "r"], tmp_path / "rep", reps=100)
    assert {v for _, v in result["table"]} == {"baseline lr=1e-3", "sn_fc lr=1e-3", "opt=eps8 lr=1e-3",
                                               "baseline lr=1e-4", "sn_fc lr=1e-4", "opt=eps8 lr=1e-4"}
    # the optimiser change is a treatment: compared with the baseline at each learning rate
    assert set(result["improvement"]) == {"sn_fc lr=1e-3", "opt=eps8 lr=1e-3", "sn_fc lr=1e-4", "opt=eps8 lr=1e-4"}


def test_a_sweep_names_its_treatment_axes(tmp_path, chain_config):
    from rlsmooth.experiments.sweep import load_sweep
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": str(chain_config()), "treatments": ["opt"],
                                    "axes": {"opt": {"baseline": {}, "eps8": {"optim.eps": 1e-8}}, "seed": [0]}}))
    assert load_sweep(path).cells[0].axes["_treatments"] == ["opt"]
    path.write_text(yaml.safe_dump({"base": str(chain_config()), "treatments": ["seed"], "axes": {"seed": [0]}}))
    with pytest.raises(Exception, match="'treatments' lists axes"):
        load_sweep(path)


def test_intervals_from_few_seeds_are_marked_and_a_missing_heat_map_is_explained(tmp_path):
    for seed in (0, 1):
        synthetic_run(tmp_path / "r", f"b{seed}", "pong", "baseline", seed, [1.0, 1.0 + seed])
        synthetic_run(tmp_path / "r", f"s{seed}", "pong", "sn_fc", seed, [5.0, 6.0 + seed])
    compare([tmp_path / "r"], tmp_path / "rep", reps=100)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Unreliable intervals (marked †):** 2 seeds per cell" in text and "[1.00, 1.00]†" in text
    assert "No heat map:" in text


def test_sigma_table_reads_each_run_at_the_comparison_step(tmp_path):
    """The report's sigma table: per (game, variant, layer) the mean and t-interval of the sigma each run
    recorded at the table's comparison step, computed here from the metric lines themselves."""
    from scipy import stats
    sigmas = {}
    for v, seed in itertools.product(("baseline", "sn_fc"), range(3)):
        start = 2.0 + seed + (5.0 if v == "baseline" else 0.0)
        length = 3 if (v, seed) == ("sn_fc", 2) else 4   # one run stops early: all are compared at 3,000
        synthetic_run(tmp_path / "runs", f"{v}-{seed}", "pong", v, seed, [1.0] * length, sigma=start)
        sigmas.setdefault(v, []).append(start + 2)      # sigma + i at step 1000 (i + 1), i = 2
    compare([tmp_path / "runs"], tmp_path / "rep", reps=50)
    lines = [line for line in (tmp_path / "rep" / "report.md").read_text().splitlines() if line.startswith("| pong |")
             and "| fc |" in line]
    assert len(lines) == 2
    for v, line in zip(("baseline", "sn_fc"), lines):
        values = np.array(sigmas[v])
        half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
        assert line == (f"| pong | {v} | fc | 3 | {values.mean():.2f} [{values.mean() - half:.2f}, "
                        f"{values.mean() + half:.2f}] | 3,000 |")


def test_probability_of_improvement_is_rliables_to_the_bit():
    from rliable import metrics

    from rlsmooth.experiments.report.stats import probability_of_improvement
    rng = np.random.default_rng(0)
    for trial in range(200):
        nx, ny, games = rng.integers(1, 6), rng.integers(1, 6), rng.integers(1, 4)
        x = rng.integers(0, 4, size=(nx, games)).astype(float)   # few values: many ties
        y = rng.integers(0, 4, size=(ny, games)).astype(float) if trial % 5 else x.copy()
        if trial % 7 == 0:
            x[rng.integers(nx), rng.integers(games)] = np.nan
        if trial % 3 == 0:
            x, y = x + rng.normal(size=x.shape), y + rng.normal(size=y.shape)
        ours, theirs = probability_of_improvement(x, y), metrics.probability_of_improvement(x, y)
        assert (np.isnan(ours) and np.isnan(theirs)) or ours == theirs, (x, y, ours, theirs)
