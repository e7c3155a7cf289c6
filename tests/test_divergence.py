"""A run that diverges ends as a result: one line, a summary that says so, the last finite checkpoint kept."""
import json
import math

import pytest
import torch
import yaml

from conftest import run_cli
from rlsmooth.experiments.report import compare
from rlsmooth.training.diagnostics import srank

# plain SGD at a learning rate of 1e3 on the squared TD error overflows within a few hundred steps
DIVERGE = ["algo.loss=mse", "optim.name=sgd", "optim.lr=1000.0", "loop.checkpoint_every=100", "loop.eval_every=100"]


def test_a_run_whose_weights_become_non_finite_stops_with_a_summary(chain_config, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", chain_config(steps=1000), *DIVERGE, "--out", out)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr   # divergence's own exit status
    printed = proc.stdout.splitlines()
    assert printed[-1].startswith("final evaluation") and "exit status 3" in proc.stdout
    named = [w for line in printed for w in line.split() if w.endswith((".pt", ".jsonl"))]
    assert named and all(__import__("pathlib").Path(w).is_file() for w in named)   # only files that exist
    line = [l for l in proc.stderr.splitlines() if "diverged between step" in l]
    assert len(line) == 1 and "not finite" in line[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diverged"] is True and summary["step"] < 1000 and summary["diverged_after_step"] < summary["step"]
    assert isinstance(summary["step"], int) and isinstance(summary["updates"], int)
    state = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] <= summary["diverged_after_step"]   # the checkpoint from before the divergence
    assert all(torch.isfinite(v).all() for v in state["net"].values())
    evals = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if "eval/episode_return" in l]
    assert evals and all(math.isfinite(e["eval/episode_return"]) for e in evals)
    # resuming a diverged run changes nothing
    before = (out / "metrics.jsonl").read_text()
    assert "diverged" in run_cli("train", "--resume", out, check=True).stdout
    assert (out / "metrics.jsonl").read_text() == before


def test_diagnostics_never_raise_on_non_finite_input():
    assert srank(torch.full((8, 4), float("nan"))) == 0
    assert srank(torch.tensor([[float("inf"), 1.0], [0.0, 1.0]])) == 0


@pytest.mark.heavy
def test_a_sweep_goes_on_and_compare_counts_the_diverged_run(chain_config, tmp_path):
    base = chain_config(steps=400, extra="loss: mse")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "base": str(base), "out": str(tmp_path / "out"),
        "set": {"loop.checkpoint_every": 100, "loop.eval_every": 100, "optim.name": "sgd"},
        "axes": {"seed": [0, 1], "optim.lr": [0.001, 1000.0]}}))
    proc = run_cli("sweep", str(sweep), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("diverged") >= 2 and proc.stdout.count("finished") >= 2
    result = compare([tmp_path / "out"], tmp_path / "rep", reps=100)
    cells = {v: c for (g, v), c in result["cells"].items()}
    assert cells["baseline optim.lr=1000.0"].diverged == 2 and cells["baseline optim.lr=0.001"].diverged == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "2 diverged" in text and "last finite evaluation" in text
    assert "diverged" in (tmp_path / "rep" / "scores.csv").read_text().splitlines()[0]


def test_a_run_diverged_before_its_first_evaluation_is_named_and_left_out(chain_config, tmp_path):
    from rlsmooth.experiments.report.runs import load_run
    out = tmp_path / "run"
    proc = run_cli("train", chain_config(steps=1000), "algo.loss=mse", "optim.name=sgd", "optim.lr=1000.0",
                   "loop.eval_every=1000", "loop.checkpoint_every=1000", "--out", out)
    assert proc.returncode == 3, proc.stderr
    assert "checkpoint:" not in proc.stdout   # none was written before it diverged
    with pytest.raises(ValueError, match="diverged after step .* before its first finite evaluation"):
        load_run(out)


def test_a_finished_run_writes_every_documented_summary_key_with_its_type(chain_config, tmp_path):
    out = tmp_path / "run"
    run_cli("train", chain_config(steps=200), "--out", out, check=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diverged"] is False and summary["stopped_at_return"] is None
    assert type(summary["step"]) is int and type(summary["updates"]) is int and summary["step"] == 200
    assert isinstance(summary["eval/episode_return"], float)
