import os
import subprocess
import sys
from pathlib import Path

import pytest

import forked_cli

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The suite runs one worker per core (pytest-xdist) and most tests start training subprocesses: one
# torch thread each keeps them from spinning against each other (tests that set threads still do).
os.environ.setdefault("OMP_NUM_THREADS", "1")

CHAIN_CONFIG = """
agent: {agent}
seed: 0
device: cpu
env: {{suite: test, game: chain, num_envs: {num_envs}, eval_num_envs: 2}}
network: {{kind: minatar, hidden: [32], channels: [4]}}
optim: {{name: adam, lr: 0.001, eps: 1.0e-4}}
algo:
  gamma: 0.9
  batch_size: 16
  replay_capacity: 2000
  learning_starts: 100
  target_update_every: 100
  epsilon_decay_steps: 300
  epsilon_end: 0.05
  {extra}
loop:
  total_steps: {steps}
  eval_every: 200
  eval_steps: 60
  log_every: 50
  checkpoint_every: 200
  progress: false
"""


def pytest_collection_modifyitems(items):
    """The heavy tests first: pytest-xdist's work stealing then balances the light ones behind them, so
    no worker is left running one long test at the end while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.fixture
def chain_config(tmp_path):
    def make(agent="dqn", steps=400, num_envs=1, extra=""):
        path = tmp_path / f"{agent}.yaml"
        path.write_text(CHAIN_CONFIG.format(agent=agent, steps=steps, num_envs=num_envs, extra=extra))
        return path
    return make


def run_cli(*args, check=False, timeout=300, env_extra=None, fresh=None):
    """``python run.py ARGS``: forked from a server that imported the suite once (tests/forked_cli.py),
    or a fresh process where the call changes the environment or RLSMOOTH_TESTS_FRESH_PROCESSES=1
    (``fresh`` True or False chooses, for the tests that compare the two)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    command = [sys.executable, str(ROOT / "run.py"), *map(str, args)]
    if fresh is None:
        fresh = bool(env_extra) or forked_cli.FRESH
    if fresh:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    else:
        proc = forked_cli.run(command, env, str(ROOT), timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.py {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return proc


def files(run_dir):
    """Every file under ``run_dir`` and its bytes: what a refusal must leave as it was."""
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr + proc.stdout
    # warning lines (e.g. schedules longer than a tiny test run) may come before the one error line
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip() and not line.startswith("warning: ")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "\x1b" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
