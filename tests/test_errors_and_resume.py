"""Every failure ends in one readable line with exit status 2, and nothing on disk is lost."""
import io
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, assert_one_line_error, files, run_cli
from rlsmooth.errors import one_line


def metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def start(config, out, *extra):
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), "train", str(config), *extra, "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert path.exists(), (proc.stderr.read() if proc.poll() is not None else "timed out")


# -- summaries and resume ----------------------------------------------------------------------

def test_resuming_a_finished_run_keeps_its_summary(chain_config, tmp_path):
    out = tmp_path / "run"
    run_cli("train", chain_config(steps=400), "--out", out, check=True)
    before = files(out)
    summary = json.loads((out / "summary.json").read_text())
    assert "eval/episode_return" in summary and summary["step"] == 400
    proc = run_cli("train", "--resume", out, check=True)
    assert "nothing to resume" in proc.stdout and "final evaluation" in proc.stdout
    assert files(out) == before
    # killed between the final checkpoint and summary.json: resume finishes the run, evaluation included
    (out / "summary.json").unlink()
    run_cli("train", "--resume", out, check=True)
    assert json.loads((out / "summary.json").read_text()) == summary


def test_temp_files_of_killed_writes_are_removed_on_resume(chain_config, tmp_path):
    out = tmp_path / "run"
    run_cli("train", chain_config(steps=400), "loop.total_steps=200", "--out", out, check=True)
    (out / "summary.json").unlink()
    config = (out / "config.yaml").read_text().replace("total_steps: 200", "total_steps: 400")
    (out / "config.yaml").write_text(config)
    orphans = [out / "checkpoints" / "latest.pt.k2j4x9.tmp", out / "metrics.jsonl.abc123.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"x" * 1000)
    run_cli("train", "--resume", out, check=True)
    assert not any(p.exists() for p in orphans)
    assert not list(out.rglob("*.tmp"))


# -- one line per class of bad input ------------------------------------------------------------

def test_out_under_a_regular_file(chain_config, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    assert_one_line_error(run_cli("train", chain_config(), "--out", blocker / "run"), "Not a directory")
    assert_one_line_error(run_cli("train", chain_config(), "--out", blocker), "is a file")
    assert blocker.read_text() == "mine"


def test_read_only_run_directory(chain_config, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert_one_line_error(run_cli("train", chain_config(), "--out", ro / "run"), "Permission denied")


@pytest.mark.parametrize("content, needle", [
    (b"agent: dqn\nseed: \xff\xfe\n", "is not UTF-8 text"),
    (b"agent: dqn\nseed: -1\n", "seed must be in [0, 2^63)"),
    (b"agent: dqn\nseed: 18446744073709551617\n", "out of range"),
    (b"agent: dqn\nloop: {total_steps: 1.0e400}\n", "loop.total_steps"),
    (b"agent: dqn\noptim: {lr: .inf}\n", "finite number"),
])
def test_undecodable_files_and_out_of_range_numbers(content, needle, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert_one_line_error(run_cli("train", path, "--out", tmp_path / "run"), needle)
    assert not (tmp_path / "run").exists()


def test_checkpoint_and_metrics_with_the_wrong_structure(chain_config, tmp_path):
    out = tmp_path / "run"
    run_cli("train", chain_config(steps=200), "--out", out, check=True)
    (out / "summary.json").unlink()
    ckpt = out / "checkpoints" / "latest.pt"
    good = ckpt.read_bytes()
    torch.save({"step": 100}, ckpt)                   # loads, but lacks its keys
    before = files(out)
    assert_one_line_error(run_cli("train", "--resume", out), "lacks", "'counters'")
    assert_one_line_error(run_cli("eval", out), "lacks", "'net'")
    state = torch.load(io.BytesIO(good), weights_only=True)
    state["net"] = {"fc.weight": torch.zeros(1)}            # whole, but the network is not this run's
    torch.save(state, ckpt)
    before = files(out)
    assert_one_line_error(run_cli("eval", out), "does not match")
    assert files(out) == before                              # refusals change nothing
    ckpt.write_bytes(good)
    metrics_file = out / "metrics.jsonl"
    text = metrics_file.read_text()
    metrics_file.write_text('["not", "a", "record"]\n' + text)
    before = files(out)
    assert_one_line_error(run_cli("train", "--resume", out), "metrics.jsonl line 1 is not a metrics record")
    assert files(out) == before


def test_weights_only_refusal_is_one_readable_line(chain_config, tmp_path):
    out = tmp_path / "run"
    run_cli("train", chain_config(steps=200), "--out", out, check=True)
    path = out / "checkpoints" / "latest.pt"
    torch.save({"step": 1, "net": {}, "opaque": random.Random(0)}, path)
    line = assert_one_line_error(run_cli("eval", out), "refused for safety", str(path))
    # one short sentence of rlsmooth's, not torch's explanation of settings a user should not change
    words = line.replace(str(path), "")
    assert "weights_only" not in words and "Unpickler" not in words and len(words) < 160


def test_one_line_strips_escape_codes_and_never_cuts():
    text = "\x1b[1mWeights only load failed.\x1b[0m\nline two\n" + "x" * 500
    out = one_line(text)
    assert "\x1b" not in out and "\n" not in out and out.endswith("x" * 500)


def test_huge_allocations_are_refused_with_their_figure(tmp_path):
    proc = run_cli("train", ROOT / "configs" / "atari_ppo.yaml", "env.num_envs=100000", "algo.num_steps=1",
                   "loop.total_steps=100000", "--out", tmp_path / "r")
    line = assert_one_line_error(proc, "GiB of host memory", "env.num_envs")
    assert "needs about 195.3 GiB" in line   # 100,008 envs x 2 MiB
    proc = run_cli("train", ROOT / "configs" / "minatar_dqn.yaml", "algo.replay_capacity=100000000000",
                   "--out", tmp_path / "r")
    assert_one_line_error(proc, "GiB of host memory", "algo.replay_capacity")
    assert not (tmp_path / "r").exists()


def test_memory_estimate_against_the_replay_arrays():
    from rlsmooth.config.yaml_files import apply_overrides, load_yaml
    from rlsmooth.pieces.replay import FrameReplay
    from rlsmooth.agents.preflight import ENV_BYTES, estimate_memory, load_train_config
    cfg = load_train_config(apply_overrides(load_yaml(ROOT / "configs" / "minatar_dqn.yaml"),
                                            ["algo.replay_capacity=20000"]))
    replay = FrameReplay(20000, 1, (4, 10, 10), stack=1)
    envs = (cfg.env.num_envs + cfg.env.eval_num_envs) * ENV_BYTES["minatar"]
    assert estimate_memory(cfg, (4, 10, 10), 4) == pytest.approx(replay.memory_bytes() + envs, rel=0.01)


# -- one writer per run directory -----------------------------------------------------------------

def test_a_second_writer_is_refused(chain_config, tmp_path):
    out = tmp_path / "run"
    first = start(chain_config(steps=500_000), out, "loop.checkpoint_every=0")
    try:
        wait_for(out / "metrics.jsonl", first)
        before = (out / "config.yaml").read_bytes()
        assert_one_line_error(run_cli("train", chain_config(), "--out", out, "--replace"), "in use by another")
        assert_one_line_error(run_cli("train", "--resume", out), "in use by another")
        assert (out / "config.yaml").read_bytes() == before
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


# -- interrupted runs -------------------------------------------------------------------------------

def kill_and_resume(config, out, kills, seed, extra=()):
    """SIGKILL a run ``kills`` times at random moments (some inside checkpoint writes), resuming each time."""
    rng = random.Random(seed)
    proc = start(config, out, *extra)
    wait_for(out / "metrics.jsonl", proc)
    done = 0
    while done < kills:
        time.sleep(rng.uniform(0.05, 0.6))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done += 1
        if (out / "summary.json").exists():
            break
        if not (out / "checkpoints" / "latest.pt").exists():   # killed before its first checkpoint: start over
            proc = start(config, out, *extra, "--replace")
        else:
            proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "train", "--resume", str(out)], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(out / "metrics.jsonl", proc)
    proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    return done


def test_kill_off_the_log_grid_then_resume_matches(chain_config, tmp_path):
    """checkpoint_every (70) is not a multiple of log_every (50): the cut window's aggregates are restored."""
    cfg = chain_config("dqn", steps=1400)
    extra = ["loop.checkpoint_every=70", "loop.eval_every=280"]
    full = tmp_path / "full"
    run_cli("train", cfg, *extra, "--out", full, check=True)
    killed = tmp_path / "killed"
    proc = start(cfg, killed, *extra)
    wait_for(killed / "checkpoints" / "latest.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(killed / "checkpoints" / "latest.pt", weights_only=True)["step"]
    run_cli("train", "--resume", killed, check=True)
    assert metrics(killed) == metrics(full), f"killed at checkpoint step {step}"
    assert json.loads((killed / "summary.json").read_text()) == json.loads((full / "summary.json").read_text())
    # TensorBoard reads one value per step across the restart's event files
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(killed))
    events.Reload()
    tb_steps = [e.step for e in events.Scalars("train/epsilon")]
    assert tb_steps == sorted(set(tb_steps)) == [r["step"] for r in metrics(full) if "train/epsilon" in r]


@pytest.mark.slow
def test_ctrl_c_off_the_log_grid_then_resume_matches(chain_config, tmp_path):
    cfg = chain_config("dqn", steps=4000)
    full = tmp_path / "full"
    run_cli("train", cfg, "loop.checkpoint_every=0", "--out", full, check=True)
    out = tmp_path / "int"
    proc = start(cfg, out, "loop.checkpoint_every=0")
    wait_for(out / "metrics.jsonl", proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130
    step = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)["step"]
    assert step < 4000
    run_cli("train", "--resume", out, check=True)
    assert metrics(out) == metrics(full), f"interrupted at step {step}"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO])
def test_failed_checkpoint_write_keeps_the_previous_one(code, chain_config, tmp_path, monkeypatch, capsys):
    """Disk full, file system turned read-only, I/O error: injected at the checkpoint writer."""
    from rlsmooth import cli
    from rlsmooth.training import checkpoint as ckpt_module
    out = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def full_disk_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:   # the second checkpoint: write part of it, then the disk is full
            f.write(b"partial")
            raise OSError(code, os.strerror(code))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt_module.torch, "save", full_disk_save)
    status = cli.main(["train", str(chain_config(steps=600)), "loop.checkpoint_every=200", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and os.strerror(code) in lines[0] and "latest.pt" in lines[0]
    assert torch.load(out / "checkpoints" / "latest.pt", weights_only=True)["step"] == 200
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(ckpt_module.torch, "save", real_save)
    assert cli.main(["train", "--resume", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["step"] == 600


@pytest.mark.slow
def test_repeated_sigkills_give_the_uninterrupted_run(chain_config, tmp_path):
    """Deliberate (pytest -m slow): 12 SIGKILLs at random points, many inside checkpoint writes."""
    cfg = chain_config("c51", steps=6000, extra="num_atoms: 11\n  v_min: -2.0\n  v_max: 2.0")
    extra = ["loop.checkpoint_every=30", "loop.log_every=50", "loop.eval_every=500"]
    full = tmp_path / "full"
    run_cli("train", cfg, *extra, "--out", full, check=True)
    killed = tmp_path / "killed"
    assert kill_and_resume(cfg, killed, kills=12, seed=0, extra=extra) >= 10
    assert metrics(killed) == metrics(full)
    assert json.loads((killed / "summary.json").read_text()) == json.loads((full / "summary.json").read_text())
    assert not list(killed.rglob("*.tmp"))


def test_run_directory_removed_under_a_running_process(chain_config, tmp_path):
    import shutil
    out = tmp_path / "run"
    proc = start(chain_config(steps=500_000), out, "loop.checkpoint_every=100")
    wait_for(out / "checkpoints" / "latest.pt", proc)
    shutil.rmtree(out)
    proc.wait(timeout=120)
    err = proc.stderr.read()
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and len(lines) == 1 and "No such file or directory" in lines[0], err
    assert "Traceback" not in err and not out.exists()


def test_a_checkpoint_older_than_a_config_key_reads_the_key_as_its_default(chain_config, tmp_path):
    """A checkpoint written before a key existed (here loop.precision) ran what the key's default
    keeps: eval and resume accept it, and still refuse a checkpoint whose value differs."""
    out = tmp_path / "run"
    run_cli("train", chain_config(steps=200), "--out", out, check=True)
    path = out / "checkpoints" / "latest.pt"
    state = torch.load(path, weights_only=True)
    assert state["config"]["loop"]["precision"] == "fp32"
    del state["config"]["loop"]["precision"]
    torch.save(state, path)
    assert "over 2 episodes" in run_cli("eval", out, "--episodes", "2", check=True).stdout
    run_cli("train", "--resume", out, "--total-steps", "400", check=True)
    assert json.loads((out / "summary.json").read_text())["step"] == 400
    state = torch.load(path, weights_only=True)
    state["config"]["loop"]["precision"] = "bf16"
    torch.save(state, path)
    before = files(out)
    assert_one_line_error(run_cli("eval", out), "loop.precision: 'bf16' → 'fp32'")
    assert_one_line_error(run_cli("train", "--resume", out, "--total-steps", "600"), "loop.precision: 'bf16' → 'fp32'")
    assert files(out) == before
