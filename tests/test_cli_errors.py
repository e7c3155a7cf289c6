"""Bad input: one line naming the problem, exit status 2, nothing on disk lost."""
import pytest

from conftest import assert_one_line_error, run_cli
from rlsmooth.config.sections import parse_train_config
from rlsmooth.config.yaml_files import apply_overrides
from rlsmooth.errors import ConfigError


@pytest.mark.parametrize("override, needle", [
    ("algo.lrr=1", "unknown config key 'algo.lrr'"),
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("algo.batch_size=abc", "algo.batch_size: expected an integer"),
    ("algo.batch_size=5000", "larger than algo.replay_capacity"),
    ("env.game=pongg", "did you mean pong"),
    ("agent=dqnn", "unknown agent 'dqnn'"),
    ("spectral.layers=[fcc]", "unknown layer 'fcc'"),
    ("loop.progress=maybe", "loop.progress: expected true/false"),
])
def test_bad_config_values(override, needle, chain_config, tmp_path):
    cfg = chain_config()
    if override.startswith("env.game"):
        override, extra = override, ["env.suite=atari"]
    else:
        extra = []
    proc = run_cli("train", cfg, override, *extra, "--out", tmp_path / "r")
    assert_one_line_error(proc, needle)


def test_missing_and_corrupt_files(chain_config, tmp_path):
    assert_one_line_error(run_cli("train", tmp_path / "nope.yaml"), "config file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: [dqn\n")
    assert_one_line_error(run_cli("train", bad), "cannot parse YAML")
    assert_one_line_error(run_cli("eval", tmp_path / "norun"), "run directory not found")

    out = tmp_path / "run"
    run_cli("train", chain_config(steps=200), "--out", out, check=True)
    ckpt = out / "checkpoints" / "latest.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    assert_one_line_error(run_cli("eval", out), "cannot read checkpoint")
    (out / "summary.json").unlink()   # a finished run resumes to a no-op; an unfinished one reads the checkpoint
    assert_one_line_error(run_cli("train", "--resume", out), "cannot read checkpoint")


def test_existing_run_directory_is_never_overwritten(chain_config, tmp_path):
    out = tmp_path / "run"
    run_cli("train", chain_config(steps=200), "--out", out, check=True)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert_one_line_error(run_cli("train", chain_config(steps=200), "--out", out), "already exists", "--resume")
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after
    # bad input with --replace deletes nothing
    import torch
    if not torch.cuda.is_available():
        assert_one_line_error(run_cli("train", chain_config(steps=200), "device=cuda", "--out", out, "--replace"),
                              "no CUDA device")
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert_one_line_error(run_cli("train", chain_config(steps=200), "algo.gamma=2", "--out", out, "--replace"),
                          "algo.gamma")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # an explicit --replace starts over
    run_cli("train", chain_config(steps=200), "--out", out, "--replace", check=True)


def test_overrides_and_typed_parsing():
    data = apply_overrides({"agent": "dqn"}, ["optim.lr=1e-5", "env.num_envs=4", "spectral.layers=[-2, conv1]"])
    from rlsmooth.agents import algo_classes
    cfg = parse_train_config(data, algo_classes())
    assert cfg.optim.lr == 1e-5 and cfg.env.num_envs == 4 and cfg.spectral.layers == [-2, "conv1"]
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ConfigError, match="expected one of"):
        parse_train_config({"agent": "dqn", "optim": {"rho_scaling": "grads"}}, algo_classes())


def test_argparse_errors_are_one_line():
    assert_one_line_error(run_cli("train", "--bogus"), "unrecognized arguments")
