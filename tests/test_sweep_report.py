import json
import math

import numpy as np
import pytest
import yaml

from conftest import run_cli
from rlsmooth.experiments.report import compare
from rlsmooth.pieces.scores import REFERENCE_SCORES, human_normalized

SWEEP = """
base: {base}
out: {out}
set:
  loop.total_steps: 200
  loop.eval_every: 100
axes:
  variant:
    baseline: {{}}
    sn_fc: {{spectral.layers: [fc]}}
  seed: [0, 1]
"""


def make_sweep(tmp_path, chain_config):
    base = chain_config(steps=200)
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.format(base=base, out=tmp_path / "sweep_out"))
    return path


def test_reference_scores_table():
    assert len(REFERENCE_SCORES) == 57
    assert REFERENCE_SCORES["pong"] == (-20.7, 14.6)
    assert REFERENCE_SCORES["breakout"] == (1.7, 30.5)
    assert REFERENCE_SCORES["montezuma_revenge"] == (0.0, 4753.3)
    assert human_normalized("pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("breakout", 1.7) == pytest.approx(0.0)
    assert math.isnan(human_normalized("chain", 1.0))


def test_local_sweep_runs_skips_and_resumes(tmp_path, chain_config):
    sweep = make_sweep(tmp_path, chain_config)
    dry = run_cli("sweep", sweep, "--dry-run", check=True).stdout
    assert "4 cells, 4 to run" in dry
    proc = run_cli("sweep", sweep, "--workers", "2", check=True)
    out = tmp_path / "sweep_out"
    cells = sorted(p.name for p in out.iterdir() if p.name != "logs")
    assert cells == ["variant=baseline__seed=0", "variant=baseline__seed=1",
                     "variant=sn_fc__seed=0", "variant=sn_fc__seed=1"]
    assert proc.stdout.count("finished") == 4
    # a second run skips everything; an interrupted cell (no summary.json) is resumed
    (out / "variant=sn_fc__seed=1" / "summary.json").unlink()
    proc = run_cli("sweep", sweep, check=True)
    assert proc.stdout.count("skipped (done)") == 3 and proc.stdout.count("resumed") == 1
    # the report reads the sweep
    report = tmp_path / "report"
    run_cli("compare", out, "--out", report, "--reps", "200", check=True)
    text = (report / "report.md").read_text()
    assert "| chain | sn[fc] | 2 |" in text and "Probability of improvement" in text
    for png in ("learning_curves.png", "sigma_curves.png"):
        assert (report / png).stat().st_size > 5000


def test_failing_cell_does_not_stop_the_others(tmp_path, chain_config):
    sweep = make_sweep(tmp_path, chain_config)
    spec = yaml.safe_load(sweep.read_text())
    spec["axes"]["variant"]["broken"] = {"optim.rho_layers": ["nope"], "optim.rho_scaling": "lr"}
    sweep.write_text(yaml.safe_dump(spec))
    # bad cells are caught before anything runs
    proc = run_cli("sweep", sweep)
    assert proc.returncode == 2 and "unknown layer 'nope'" in proc.stderr
    # a run that fails at run time is reported, the rest finish: block two cells' directories
    del spec["axes"]["variant"]["broken"]
    sweep.write_text(yaml.safe_dump(spec))
    out = tmp_path / "sweep_out"
    out.mkdir()
    for seed in (0, 1):
        (out / f"seed={seed}__variant=sn_fc").write_text("not a run directory")
    proc = run_cli("sweep", sweep, "--workers", "2")
    assert proc.returncode == 1
    assert proc.stdout.count("finished") == 2 and proc.stdout.count("failed (2)") == 2
    assert "is a file, not a directory" in proc.stdout


def test_ray_backend_runs_the_same_cells(tmp_path, chain_config):
    pytest.importorskip("ray")
    sweep = make_sweep(tmp_path, chain_config)
    proc = run_cli("sweep", sweep, "--backend", "ray", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "sweep_out"
    assert all((out / c / "summary.json").is_file() for c in ("variant=baseline__seed=0", "variant=sn_fc__seed=1"))


def synthetic_run(root, name, game, variant, seed, returns, suite="atari", sigma=None, selector=None,
                  frame_skip=4):
    """A run directory as training writes it; ``variant`` 'sn_fc' normalises fc (selected by ``selector``)."""
    d = root / name
    d.mkdir(parents=True)
    normalised = ["fc"] if variant == "sn_fc" else []
    config = {"agent": "c51", "seed": seed, "env": {"suite": suite, "game": game, "frame_skip": frame_skip},
              "spectral": {"layers": selector or normalised or "none"},
              "meta": {"layers": {"normalised": normalised, "tracked": [], "rho_layers": []}}}
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    (d / "sweep_cell.json").write_text(json.dumps({"variant": variant, "seed": seed}))
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
    n, mean, lo, hi = result["table"][("pong", "sn[fc]")]
    half = stats.t.ppf(0.975, 2) * vals.std(ddof=1) / np.sqrt(3)
    assert n == 3 and mean == pytest.approx(vals.mean()) and (lo, hi) == pytest.approx((mean - half, mean + half))
    # aggregates of human-normalised scores
    for v in ("baseline", "sn_fc"):
        hns = np.array([[human_normalized(g, finals[(v, g, s)]) for g in games] for s in range(3)])
        agg = result["aggregates"]["sn[fc]" if v == "sn_fc" else v]
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
    assert result["improvement"]["sn[fc]"][0] == pytest.approx(poi)
    csv_text = (tmp_path / "rep" / "scores.csv").read_text()
    assert csv_text.count("\n") == 1 + 24


def test_variants_grouped_by_resolved_layers_and_frames_from_frame_skip(tmp_path):
    # the same layer chosen as [-2] in one run and [fc] in another is one variant
    synthetic_run(tmp_path / "r", "a", "pong", "sn_fc", 0, [1.0, 2.0], selector=[-2], frame_skip=3)
    synthetic_run(tmp_path / "r", "b", "pong", "sn_fc", 1, [1.0, 4.0], selector=["fc"], frame_skip=3)
    synthetic_run(tmp_path / "r", "c", "pong", "baseline", 0, [1.0, 1.0], frame_skip=3)
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


@pytest.mark.slow
def test_gpu_ablation_script_runs_within_its_budget_on_cpu(tmp_path, chain_config):
    """bench/minatar_ablation_gpu.sh with a tiny budget: cells run, stop on time, resume, and a report follows."""
    import os
    import subprocess
    import sys
    from conftest import ROOT
    base = chain_config(steps=200_000)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: {base}\naxes:\n  variant:\n    baseline: {{}}\n    sn_fc: {{spectral.layers: [fc]}}\n")
    env = dict(os.environ, PYTHON=sys.executable, SWEEP=str(sweep), OUT_DIR=str(tmp_path / "out"), BUDGET_S="35",
               WORKERS="2", EXTRA="loop.eval_every=2000 loop.checkpoint_every=2000 device=cpu")
    proc = subprocess.run(["bash", str(ROOT / "bench" / "minatar_ablation_gpu.sh")], env=env, capture_output=True,
                          text=True, timeout=240)
    out = tmp_path / "out" / "minatar_ablation_gpu"
    assert proc.returncode == 0, proc.stderr[-2000:]
    throughput = (out / "throughput.txt").read_text()
    assert "steps/s over 2 processes" in throughput and not throughput.startswith("agent steps this invocation: 0 ")
    for cell in ("variant=baseline", "variant=sn_fc"):
        assert (out / "runs" / cell / "checkpoints" / "latest.pt").is_file()   # stopped by the budget, resumable
    assert (out / "report" / "report.md").is_file()
