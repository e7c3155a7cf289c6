import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, assert_one_line_error, run_cli


def metrics(run_dir, prefix=""):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows
            if any(k.startswith(prefix) for k in r)]


@pytest.mark.parametrize("agent", ["dqn", "c51"])
def test_agent_learns_chain(agent, chain_config, tmp_path):
    extra = "num_atoms: 11\n  v_min: -2.0\n  v_max: 2.0" if agent == "c51" else "loss: mse"
    cfg = chain_config(agent, steps=1600, num_envs=2, extra=extra)
    out = tmp_path / "run"
    proc = run_cli("train", cfg, "loop.eval_every=800", "--out", out, check=True)
    assert "final evaluation" in proc.stdout
    evals = metrics(out, "eval/episode_return")
    # optimal return: 5 steps right = 4 * -0.01 + 1 = 0.96; random play mostly truncates
    assert evals[-1]["eval/episode_return"] == pytest.approx(0.96, abs=1e-4)
    assert (out / "checkpoints" / "latest.pt").is_file()
    text = (out / "config.yaml").read_text()
    assert "git_commit" in text and "packages" in text and "hardware" in text
    assert list(out.glob("events.out.tfevents*"))
    eval_out = run_cli("eval", out, "--episodes", "3", check=True).stdout
    assert "return 0.96 ± 0.00 over 3 episodes" in eval_out
    # one policy at one epsilon plays the same episodes on an evaluation env and on a training env
    on_eval = run_cli("eval", out, "--episodes", "6", "--epsilon", "0.5", check=True).stdout.strip()
    on_train = run_cli("eval", out, "--episodes", "6", "--epsilon", "0.5", "--env", "training", check=True).stdout.strip()
    assert "at epsilon 0.5" in on_eval and on_train == on_eval + " on a training env"
    assert_one_line_error(run_cli("eval", out, "--epsilon", "1.5"), "--epsilon must be in [0, 1]")
    assert_one_line_error(run_cli("eval", out, "--epsilon", "0.1", "--greedy"), "contradict")


def test_minatar_and_replay_ratio_with_many_envs(chain_config, tmp_path):
    pytest.importorskip("minatar")
    out = tmp_path / "m"
    run_cli("train", ROOT / "configs" / "minatar_c51.yaml", "env.num_envs=4", "loop.total_steps=400",
            "algo.learning_starts=200", "loop.eval_every=0", "loop.eval_steps=100", "loop.log_every=100",
            "loop.progress=false", "--out", out, check=True)
    rows = metrics(out, "train/updates")
    # replay ratio 1/4 is kept with N=4: 200 agent steps after warm-up -> 50 updates (+1 at the boundary)
    assert rows[-1]["train/updates"] == pytest.approx(51, abs=1)
    assert "train/loss" in rows[-1]


def test_atari_few_steps(tmp_path):
    out = tmp_path / "a"
    run_cli("train", ROOT / "configs" / "atari_dqn_adam.yaml", "env.game=pong", "env.num_envs=2",
            "algo.replay_capacity=2000", "algo.learning_starts=64", "loop.total_steps=160", "loop.eval_every=0",
            "loop.eval_steps=32", "loop.log_every=80", "loop.progress=false", "--out", out, check=True)
    rows = metrics(out, "train/loss")
    assert rows and rows[-1]["train/updates"] > 0


def test_same_seed_gives_identical_metrics(chain_config, tmp_path):
    cfg = chain_config("dqn", steps=500)
    for name in ("a", "b"):
        run_cli("train", cfg, "--out", tmp_path / name, check=True)
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    run_cli("train", cfg, "seed=1", "--out", tmp_path / "c", check=True)
    assert metrics(tmp_path / "a") != metrics(tmp_path / "c")


@pytest.mark.heavy
def test_resume_after_sigkill_matches_uninterrupted_run(chain_config, tmp_path):
    cfg = chain_config("c51", steps=3000, extra="num_atoms: 11\n  v_min: -2.0\n  v_max: 2.0")
    full = tmp_path / "full"
    run_cli("train", cfg, "--out", full, check=True)

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "train", str(cfg), "--out", str(killed)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoints" / "latest.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists()
    interrupted_rows = metrics(killed)
    assert interrupted_rows[-1]["step"] < 3000, "the run finished before it could be killed"

    run_cli("train", "--resume", killed, check=True)
    assert metrics(killed) == metrics(full)
    steps = [r["step"] for r in metrics(killed, "train/epsilon")]
    assert steps == sorted(set(steps))          # no duplicated or missing log entries


def test_ctrl_c_writes_checkpoint(chain_config, tmp_path):
    cfg = chain_config("dqn", steps=200_000)
    out = tmp_path / "int"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "train", str(cfg), "loop.checkpoint_every=0",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "checkpoint written" in err
    assert (out / "checkpoints" / "latest.pt").is_file()


@pytest.mark.slow
def test_dqn_learns_minatar_breakout(tmp_path):
    """Deliberate (pytest -m slow, about a minute): DQN clearly beats random play (~0.5) on MinAtar."""
    pytest.importorskip("minatar")
    out = tmp_path / "learn"
    run_cli("train", ROOT / "configs" / "quickstart.yaml", "loop.total_steps=80000", "loop.eval_every=0",
            "loop.eval_steps=5000", "loop.progress=false", "--out", out, check=True, timeout=900)
    evals = metrics(out, "eval/episode_return")
    assert evals[-1]["eval/episode_return"] > 2.0


@pytest.mark.parametrize("config, steps", [("minatar_dqn.yaml", 400), ("minatar_ppo.yaml", 512)])
def test_other_agents_run_on_minatar(config, steps, tmp_path):
    pytest.importorskip("minatar")
    out = tmp_path / "m"
    extra = ["algo.learning_starts=200"] if "dqn" in config else ["env.num_envs=4", "algo.num_steps=64"]
    run_cli("train", ROOT / "configs" / config, f"loop.total_steps={steps}", "loop.eval_every=0",
            "loop.eval_steps=100", "loop.log_every=100", "loop.progress=false", *extra, "--out", out, check=True)
    rows = metrics(out)
    assert rows[-1]["step"] == steps and "eval/episodes" in rows[-1]
    assert any("train/loss" in r or "train/value_loss" in r for r in rows)


def test_thread_choice(chain_config, tmp_path):
    """A single run uses every core it may use; `threads` overrides; sweeps give each run cores / workers."""
    import yaml
    from rlsmooth.training.runtime import available_cores
    import os
    for threads, expected in ((0, int(os.environ.get("OMP_NUM_THREADS") or available_cores())), (1, 1)):
        out = tmp_path / f"t{threads}"
        run_cli("train", chain_config(steps=200), f"threads={threads}", "--out", out, check=True)
        meta = yaml.safe_load((out / "config.yaml").read_text())["meta"]
        assert meta["hardware"]["torch_threads"] == expected
    from rlsmooth.experiments.sweep import Cell, cell_command
    command = cell_command(Cell("c", {}, ["seed=1"], tmp_path / "c"), tmp_path / "base.yaml", threads=1)
    assert "threads=1" in command and command.index("threads=1") < command.index("seed=1")


def test_acting_skips_the_forward_pass_when_every_env_explores():
    import numpy as np
    import torch
    from rlsmooth.agents.dqn import epsilon_greedy
    calls = []

    def q_values():
        calls.append(1)
        return torch.tensor([[0.0, 1.0]] * 4)
    a = epsilon_greedy(q_values, 4, 2, 1.0, np.random.default_rng(0))
    assert not calls and a.shape == (4,)
    b = epsilon_greedy(q_values, 4, 2, 0.0, np.random.default_rng(0))
    assert calls == [1] and b.tolist() == [1, 1, 1, 1]
    # the same draws as computing Q first: which envs explore, then their random actions
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    mixed = epsilon_greedy(q_values, 4, 2, 0.5, rng1)
    explore = rng2.random(4) < 0.5
    reference = np.ones(4, np.int64)
    reference[explore] = rng2.integers(0, 2, size=int(explore.sum()))
    assert mixed.tolist() == reference.tolist()


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["dqn", "a2c"])
def test_bench_reports_side_by_side_figures(agent, tmp_path):
    pytest.importorskip("minatar")
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--suite", "minatar", "--agent", agent, "--num-envs", "2", "--steps", "600",
                   "--repeats", "1", "--json", out, check=True, timeout=600)
    report = json.loads(out.read_text())
    entry = report["agents"][agent]
    assert set(entry["loop_steps_per_s"]) == {"plain", "sn[auto]"} and entry["env_steps_per_s"] > 0
    for name, repeats in entry["loop_steps_per_s_repeats"].items():   # one rate per repeat; the median is theirs
        assert len(repeats) == 1 and entry["loop_steps_per_s"][name] == repeats[0]
    assert "tensorboard" not in proc.stdout + proc.stderr   # the bench has no run directory to point at
    if agent == "dqn":
        assert entry["replay_samples_per_s_host"] > 0 and entry["replay_samples_per_s_device"] > 0
        assert "from host memory" in proc.stdout


def test_stop_return_ends_training_at_the_first_evaluation_past_it(chain_config, tmp_path):
    extra = "loss: mse"
    cfg = chain_config("dqn", steps=4000, num_envs=2, extra=extra)
    out = tmp_path / "run"
    run_cli("train", cfg, "loop.eval_every=400", "loop.stop_return=0.5", "--out", out, check=True)
    evals = metrics(out, "eval/episode_return")
    returns = [r["eval/episode_return"] for r in evals]
    # every evaluation but the last stayed at or below the threshold; the last passed it
    assert returns[-1] > 0.5 and all(r <= 0.5 for r in returns[:-1])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_at_return"] == 0.5 and summary["step"] == evals[-1]["step"] < 4000
    # the run counts as finished: resuming it changes nothing
    before = (out / "metrics.jsonl").read_text()
    proc = run_cli("train", "--resume", out, check=True)
    assert "nothing to resume" in proc.stdout and (out / "metrics.jsonl").read_text() == before
