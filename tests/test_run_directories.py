"""Run directories and checkpoints: --replace deletes only rlsmooth's runs, half-made directories
recover, checkpoints are checked whole and against config.yaml before use, and a finished run can
be continued."""
import atexit
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from conftest import assert_one_line_error, files, run_cli


def metric_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_replace_never_deletes_a_directory_rlsmooth_did_not_write(chain_config, tmp_path):
    mine = tmp_path / "deploy"
    mine.mkdir()
    (mine / "config.yaml").write_text("name: my-k8s-deployment\n")
    (mine / "data.txt").write_text("precious")
    before = files(mine)
    line = assert_one_line_error(run_cli("train", chain_config(), "--out", mine, "--replace"), "--replace refused")
    assert "--resume" not in line
    assert files(mine) == before and sorted(p.name for p in mine.iterdir()) == ["config.yaml", "data.txt"]  # no .lock
    line = assert_one_line_error(run_cli("train", chain_config(), "--out", mine), "already exists")
    assert "--resume" not in line and files(mine) == before


def test_replace_restarts_an_rlsmooth_run(chain_config, tmp_path):
    out = tmp_path / "run"
    run_cli("train", chain_config(steps=200), "--out", out, check=True)
    assert yaml.safe_load((out / "config.yaml").read_text())["meta"]["written_by"] == "rlsmooth"
    assert_one_line_error(run_cli("train", chain_config(steps=200), "--out", out), "--resume")
    run_cli("train", chain_config(steps=200), "--out", out, "--replace", check=True)
    assert (out / "summary.json").is_file()


def test_directory_left_by_a_kill_during_the_first_config_write_counts_as_empty(chain_config, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("")
    (out / "config.yaml.abc123.tmp").write_text("agent: dq")      # a write the kill cut short
    run_cli("train", chain_config(steps=200), "--out", out, check=True)
    assert (out / "summary.json").is_file() and not list(out.glob("*.tmp"))


_TEMPLATES: dict[int, Path] = {}


def good_checkpoint(chain_config, tmp_path, steps=400):
    """A run stopped at its last checkpoint, in ``tmp_path / 'run'``: trained once per test process
    and copied, since the tests that break it each need a fresh one."""
    if steps not in _TEMPLATES:
        root = Path(tempfile.mkdtemp(prefix="rlsmooth-template-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        template = root / "run"
        run_cli("train", chain_config(steps=steps), "loop.checkpoint_every=200", "--out", template, check=True)
        (template / "summary.json").unlink()
        _TEMPLATES[steps] = template
    out = tmp_path / "run"
    shutil.copytree(_TEMPLATES[steps], out)
    path = out / "checkpoints" / "latest.pt"
    return out, path, path.read_bytes()


@pytest.mark.parametrize("key", ["rng.numpy", "env.pos", "replay", "counters.next_log", "counters.updates",
                                 "run.window.count", "config", "optimizer"])
def test_checkpoint_with_a_key_renamed_is_refused_naming_it(chain_config, tmp_path, key):
    out, path, good = good_checkpoint(chain_config, tmp_path)
    state = torch.load(io.BytesIO(good), weights_only=True)
    *parents, last = key.split(".")
    node = state
    for p in parents:
        node = node[p]
    node[last + "_renamed"] = node.pop(last)
    torch.save(state, path)
    before = files(out)
    assert_one_line_error(run_cli("train", "--resume", out), f"'{key}'")
    assert files(out) == before


@pytest.mark.parametrize("edit, needle", [
    ({"seed": 5}, "seed: 0 → 5"),
    ({"optim": {"name": "rmsprop"}}, "optim.name: 'adam' → 'rmsprop'"),
    ({"agent": "c51", "algo!": {"num_atoms": 11, "v_min": -2.0, "v_max": 2.0, "learning_starts": 100,
                                "batch_size": 16, "replay_capacity": 2000}}, "agent: 'dqn' → 'c51'"),
    ({"network": {"hidden": [16]}}, "network.hidden: [32] → [16]"),
    ({"spectral": {"layers": ["fc"]}}, "spectral.layers: 'none' → ['fc']"),
    ({"optim": {"rho_scaling": "lr"}}, "optim.rho_scaling: 'none' → 'lr'"),
    ({"env": {"num_envs": 2}}, "env.num_envs: 1 → 2"),
    ({"env": {"game": "chain", "suite": "test", "max_episode_frames": 5000}}, "env.max_episode_frames"),
])
def test_resume_refuses_a_config_edited_in_a_key_that_shapes_the_run(chain_config, tmp_path, edit, needle):
    out, path, good = good_checkpoint(chain_config, tmp_path)
    config = yaml.safe_load((out / "config.yaml").read_text())
    for section, value in edit.items():
        if section.endswith("!"):   # the whole section replaced
            config[section[:-1]] = value
        elif isinstance(value, dict):
            config.setdefault(section, {}).update(value)
        else:
            config[section] = value
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = files(out)
    line = assert_one_line_error(run_cli("train", "--resume", out), "changed since its checkpoint", needle)
    assert "Traceback" not in line and files(out) == before
    if "game" not in json.dumps(edit):   # eval refuses the same disagreement
        assert_one_line_error(run_cli("eval", out, "--episodes", "1"), "disagrees with its checkpoint")


def test_eval_and_resume_refuse_a_checkpoint_of_another_game(tmp_path):
    pytest.importorskip("minatar")
    from conftest import ROOT
    out = tmp_path / "m"
    run_cli("train", ROOT / "configs" / "minatar_dqn.yaml", "loop.total_steps=300", "algo.learning_starts=100",
            "loop.eval_every=0", "loop.eval_steps=50", "loop.checkpoint_every=200", "loop.progress=false",
            "--out", out, check=True)
    (out / "summary.json").unlink()
    config = (out / "config.yaml").read_text().replace("game: breakout", "game: asterix")
    (out / "config.yaml").write_text(config)
    assert_one_line_error(run_cli("eval", out, "--episodes", "1"), "env.game: 'breakout' → 'asterix'")
    assert_one_line_error(run_cli("train", "--resume", out), "env.game: 'breakout' → 'asterix'")
    assert not (out / "summary.json").exists()


def test_allowed_changes_on_resume_are_recorded(chain_config, tmp_path):
    out, path, good = good_checkpoint(chain_config, tmp_path)
    text = (out / "config.yaml").read_text().replace("log_every: 50", "log_every: 100")
    (out / "config.yaml").write_text(text)
    run_cli("train", "--resume", out, check=True)
    meta = yaml.safe_load((out / "config.yaml").read_text())["meta"]
    assert meta["resumed"] == [{"step": 400, "changed": {"loop.log_every": [50, 100]}}]


def test_total_steps_continues_a_finished_run_in_the_same_files(chain_config, tmp_path):
    out, long = tmp_path / "short", tmp_path / "long"
    run_cli("train", chain_config(steps=400), "--out", out, check=True)
    run_cli("train", chain_config(steps=800), "--out", long, check=True)
    assert "nothing to resume" in run_cli("train", "--resume", out, check=True).stdout
    assert_one_line_error(run_cli("train", "--resume", out, "--total-steps", "200"), "below the 400 steps")
    run_cli("train", "--resume", out, "--total-steps", "800", check=True)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["loop"]["total_steps"] == 800
    assert config["meta"]["resumed"][0]["changed"] == {"loop.total_steps": [400, 800]}
    assert json.loads((out / "summary.json").read_text())["step"] == 800
    # the continued run holds the metrics of one 800-step run on the chain env (bit-exact resume),
    # the extra log line at the old end aside
    continued = [r for r in metric_rows(out) if r["step"] != 400 or "eval/episode_return" in r]
    uninterrupted = [r for r in metric_rows(long) if r["step"] != 400 or "eval/episode_return" in r]
    assert [r["step"] for r in continued] == [r["step"] for r in uninterrupted]


def test_a_refused_resume_writes_nothing_and_a_short_budget_is_refused_alike(chain_config, tmp_path):
    out, path, good = good_checkpoint(chain_config, tmp_path)   # checkpoint at 400, no summary
    # a hand edit in a key that shapes the run: refused, and --total-steps is not written either
    text = (out / "config.yaml").read_text().replace("gamma: 0.9", "gamma: 0.5")
    (out / "config.yaml").write_text(text)
    before = files(out)
    assert_one_line_error(run_cli("train", "--resume", out, "--total-steps", "3000"), "algo.gamma")
    assert files(out) == before
    (out / "config.yaml").write_text(text.replace("gamma: 0.5", "gamma: 0.9"))
    before = files(out)
    # an unfinished run asked for fewer steps than its checkpoint holds: refused as a finished one is
    assert_one_line_error(run_cli("train", "--resume", out, "--total-steps", "300"), "below the 400 steps")
    assert files(out) == before


def test_resume_takes_the_documented_overrides_and_refuses_the_rest_by_key(chain_config, tmp_path):
    out, path, good = good_checkpoint(chain_config, tmp_path)
    before = files(out)
    assert_one_line_error(run_cli("train", "--resume", out, "optim.lr=0.5"), "--resume cannot change optim.lr")
    assert_one_line_error(run_cli("train", "--resume", out, "loop"), "'loop' is not key=value")
    assert files(out) == before
    proc = run_cli("train", "--resume", out, "loop.progress=true", "loop.log_every=100", check=True)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["loop"]["progress"] is True and config["loop"]["log_every"] == 100
    assert config["meta"]["resumed"] == [{"step": 400, "changed": {"loop.log_every": [50, 100],
                                                                   "loop.progress": [False, True]}}]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s["optimizer"]["param_groups"][0].update(lr=0.5, base_lr=0.5), "base_lr' is 0.5 where optim.lr"),
    (lambda s: s["optimizer"]["param_groups"][0].update(eps=1.0), "eps' is 1.0 where optim.eps"),
    (lambda s: s["counters"].update(next_eval=10_000), "'counters.next_eval' is 10000"),
])
def test_values_edited_inside_a_checkpoint_are_refused_by_key(chain_config, tmp_path, edit, needle):
    out, path, good = good_checkpoint(chain_config, tmp_path)
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    before = files(out)
    assert_one_line_error(run_cli("train", "--resume", out), needle)
    assert files(out) == before


def test_a_resume_at_another_thread_count_records_it(chain_config, tmp_path):
    out, path, good = good_checkpoint(chain_config, tmp_path)
    run_cli("train", "--resume", out, check=True, env_extra={"OMP_NUM_THREADS": "2"})
    resumed = yaml.safe_load((out / "config.yaml").read_text())["meta"]["resumed"]
    assert resumed == [{"step": 400, "changed": {"torch_threads": [1, 2]}}]
