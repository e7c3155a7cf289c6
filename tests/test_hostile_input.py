"""Hostile input: alias bombs, values of the wrong type at any level, terminal escapes in error lines,
configs that combine what cannot be combined, and a disk that fills up."""
import os
import subprocess
import time

import pytest

from conftest import ROOT, assert_one_line_error, files, run_cli
from rlsmooth.errors import one_line

BOMB = "\n".join(["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
                 + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)])


@pytest.mark.parametrize("where", ["network:\n  hidden: *a8", "spectral:\n  layers: *a8", "seed: *a8"])
def test_yaml_alias_bomb_is_refused_fast(tmp_path, where):
    path = tmp_path / "bomb.yaml"
    path.write_text(f"agent: dqn\n{BOMB}\n{where}\n")
    start = time.perf_counter()
    proc = run_cli("train", path, "--out", tmp_path / "run", timeout=60)
    assert time.perf_counter() - start < 20   # interpreter start-up included; the refusal itself is instant
    assert_one_line_error(proc, "aliases expand to more than")
    assert not (tmp_path / "run").exists()


def test_alias_bomb_in_an_override_is_refused():
    from rlsmooth.config.yaml_files import apply_overrides
    from rlsmooth.errors import ConfigError
    with pytest.raises(ConfigError, match="aliases expand"):
        apply_overrides({}, ["seed=" + "{" + BOMB.replace("\n", ", ") + ", b: *a8}"])


@pytest.mark.parametrize("text, needle", [
    ("agent: [a, b]\n", "unknown agent ['a', 'b']"),
    ("agent: {x: 1}\n", "unknown agent"),
    ("agent: dqn\nenv: [1, 2]\n", "env: expected a mapping"),
    ("agent: dqn\nalgo: 5\n", "algo: expected a mapping"),
    ("agent: dqn\nnetwork: {hidden: {a: 1}}\n", "network.hidden: expected a list"),
    ("agent: dqn\nspectral: {layers: [[fc]]}\n", "spectral.layers: list items"),
    ("agent: dqn\nloop: {total_steps: [1]}\n", "loop.total_steps: expected an integer"),
    ("agent: dqn\nenv: {game: [breakout]}\n", "env.game: expected a string"),
])
def test_a_value_of_the_wrong_type_at_any_level_is_one_line(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert_one_line_error(run_cli("train", path, "--out", tmp_path / "run"), needle)


def test_error_lines_carry_no_control_characters():
    hostile = "bad\x1b]0;owned\x07 title \x1bc reset \x1b[31mred\x1b[0m bell\x07 nul\x00 del\x7f csi\x9b2J\nnext"
    line = one_line(hostile)
    assert line == "bad title reset red bell nul del csi next"
    assert all(ch == " " or ch.isprintable() for ch in line)


def test_a_config_value_with_escapes_reaches_the_terminal_clean(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('agent: "dqn\\e]0;owned\\a\\ec"\n')
    line = assert_one_line_error(run_cli("train", path, "--out", tmp_path / "run"), "unknown agent")
    assert all(ch.isprintable() for ch in line)


def test_rho_scaling_a_layer_sn_normalises_is_refused(chain_config, tmp_path):
    assert_one_line_error(run_cli("train", chain_config(), "spectral.layers=[fc]", "optim.rho_scaling=lr+grad",
                                  "optim.rho_layers=[fc]", "--out", tmp_path / "run"), "also normalises")
    assert not (tmp_path / "run").exists()
    # SN on one layer and rho-scaling another is a valid ablation
    run_cli("train", chain_config(steps=200), "spectral.layers=[conv1]", "optim.rho_scaling=grad",
            "optim.rho_layers=[fc]", "--out", tmp_path / "ok", check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MiB file system (tmpfs), where the tests run as root; skipped with the reason otherwise."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_disk_filling_during_a_checkpoint_write_says_so(chain_config, small_disk):
    """A checkpoint that does not fit fails in torch's zip writer ('unexpected pos ...') or with ENOSPC:
    either way the line says the disk is full and how much is free, and the previous checkpoint stays."""
    out = small_disk / "run"
    # a 200k-transition replay of 10x10 frames is ~20 MB per checkpoint: more than the disk holds
    proc = run_cli("train", chain_config(steps=400), "algo.replay_capacity=200000", "--out", out)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    line = errors[0]
    assert "No space left on device" in line and "bytes free on that file system" in line and "latest.pt" in line
    assert "unexpected pos" not in line and "enforce fail" not in line
    assert not list(out.rglob("*.tmp"))


def test_read_only_file_system_is_named(chain_config, small_disk):
    out = small_disk / "run"
    run_cli("train", chain_config(steps=200), "--out", out, check=True)
    (out / "summary.json").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        before = files(out)
        assert_one_line_error(run_cli("train", "--resume", out), "Read-only file system")
        assert files(out) == before
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)


def test_videos_onto_a_read_only_or_full_disk_are_one_line_and_leave_nothing(small_disk, capfd):
    pytest.importorskip("minatar")
    pytest.importorskip("imageio_ffmpeg")
    import numpy as np
    from rlsmooth.agents.preflight import load_train_config
    from rlsmooth.config.yaml_files import load_yaml
    from rlsmooth.errors import UserError
    from rlsmooth.experiments import video
    from rlsmooth.pieces.seeding import EVAL_CLI, SeedStreams
    cfg = load_train_config(load_yaml(ROOT / "configs" / "minatar_dqn.yaml"))
    seeds = SeedStreams(0).env_seeds(EVAL_CLI, 2)
    policy = lambda env: lambda obs: np.zeros(1, np.int64)   # noqa: E731
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with pytest.raises(UserError, match="Read-only file system") as err:
            video.record(cfg, policy, seeds, small_disk)   # the mount point itself
        assert "\n" not in str(err.value)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    try:   # fill the disk to its last block
        with open(small_disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    with pytest.raises(UserError, match="nothing was kept") as err:
        video.record(cfg, policy, seeds, small_disk / "v")
    assert "\n" not in str(err.value) and not (small_disk / "v").exists()
    assert "ffmpeg" not in capfd.readouterr().err.lower()
    (small_disk / "filler").unlink()
    episodes = video.record(cfg, policy, seeds, small_disk / "v")   # the retry: nothing in the way
    assert [e.path.name for e in episodes] == ["episode_0.mp4", "episode_1.mp4"]
    assert sorted(p.name for p in (small_disk / "v").iterdir()) == ["episode_0.mp4", "episode_1.mp4"]


def test_names_with_hidden_characters_show_them_and_messages_print_no_escapes(chain_config, tmp_path, capsys):
    pytest.importorskip("gymnasium")
    from types import SimpleNamespace
    from rlsmooth.config.sections import EnvConfig
    from rlsmooth.errors import ConfigError, one_line
    from rlsmooth.pieces.gym_env import check_gym_env
    from rlsmooth.population.loop import Member
    from rlsmooth.training.logger import Logger
    with pytest.raises(ConfigError) as err:
        check_gym_env(EnvConfig(suite="gym", game="CartPole-v1\x1b[0m"))
    line = one_line(str(err.value))
    assert "'CartPole-v1\\x1b[0m'" in line and "\x1b" not in line   # not "unknown 'CartPole-v1'; did you mean CartPole-v1"
    logger = Logger([], 0, 10, progress=False)
    logger.message("run directory: \x1b[31mred\x1b[0m")
    logger.close()
    assert "\x1b" not in capsys.readouterr().err
    said = []
    member = SimpleNamespace(run_dir=tmp_path / "m", run=SimpleNamespace(logger=SimpleNamespace(message=said.append)))
    Member.fail(member, PermissionError(1, "Operation not permitted", str(tmp_path / "m" / "metrics.jsonl")))
    assert str(tmp_path / "m" / "metrics.jsonl") in member.error and "Operation not permitted" in said[0]
