"""The tests' forked CLI runs give what a fresh ``python run.py`` gives: streams, status and the run itself."""
import json
import subprocess

import pytest

from conftest import run_cli


def fresh_run(*args):
    return run_cli(*args, fresh=True)


def forked_run(*args, timeout=300):
    return run_cli(*args, timeout=timeout, fresh=False)


@pytest.mark.parametrize("args", [["--version"], ["eval", "--help"], ["train", "--no-such-option"],
                                  ["train", "configs/minatar_dqn.yaml", "algo.lrr=1"]],
                         ids=["version", "help", "usage error", "config error"])
def test_streams_and_status_equal_a_fresh_process(args):
    fresh, forked = fresh_run(*args), forked_run(*args)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


def test_a_forked_training_run_writes_the_fresh_runs_metrics(tmp_path, chain_config):
    config = chain_config(steps=300)
    fresh, forked = fresh_run("train", config, "--out", tmp_path / "fresh"), forked_run("train", config, "--out", tmp_path / "forked")
    assert fresh.returncode == 0, fresh.stderr
    assert forked.returncode == 0, forked.stderr

    def rows(name):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]
    assert rows("fresh") == rows("forked") and rows("fresh")


def test_a_run_past_its_timeout_is_killed_as_subprocess_run_kills_it(chain_config, tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        forked_run("train", chain_config(steps=10**7), "--out", tmp_path / "r", timeout=3)
