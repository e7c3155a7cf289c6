"""The W&B sink in W&B's offline mode (local files, no account, no network): the same metrics as
metrics.jsonl at the same steps, the resolved config as the run's config, the run directory's name
as the run's name, and a resumed run continuing the same W&B run.

The offline ``.wandb`` file is read here independently of wandb's own tools: a LevelDB-style log
(32 KiB blocks of chunks with a 7-byte header) of protobuf ``Record`` messages after a 7-byte file header.
"""
import json
import struct

import pytest

from conftest import run_cli

pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2 as pb  # noqa: E402

BLOCK = 32768


def wandb_records(path):
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, records, pending = 7, [], b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:   # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):   # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history(records):
    rows = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            rows.setdefault(int(row.pop("_step")), {}).update(row)
    return rows


def offline_runs(run_dir):
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_offline_run_has_the_metrics_config_and_name(chain_config, tmp_path):
    run = tmp_path / "chain_run"
    run_cli("train", chain_config("dqn", steps=400), "wandb.enabled=true", "wandb.mode=offline", "--out", run,
            check=True)
    (offline,) = offline_runs(run)
    run_id = (run / "wandb_run_id").read_text().strip()
    assert offline.name.endswith(run_id)
    records = wandb_records(offline / f"run-{run_id}.wandb")
    (info,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert info.run_id == run_id and info.display_name == "chain_run"
    config = {u.key: json.loads(u.value_json) for u in info.config.update}
    assert config["agent"] == "dqn" and config["loop"]["total_steps"] == 400 and config["wandb"]["mode"] == "offline"
    logged = history(records)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines
    for line in lines:
        step = line.pop("step")
        for key, value in line.items():
            assert logged[step][key] == pytest.approx(value, rel=1e-6), (step, key)


def test_resumed_run_continues_the_same_wandb_run(chain_config, tmp_path):
    run = tmp_path / "run"
    cfg = chain_config("dqn", steps=400)
    run_cli("train", cfg, "wandb.enabled=true", "wandb.mode=offline", "--out", run, check=True)
    run_id = (run / "wandb_run_id").read_text().strip()
    run_cli("train", "--resume", run, "--total-steps", "600", check=True)
    first, second = offline_runs(run)
    assert first.name.endswith(run_id) and second.name.endswith(run_id)
    later = history(wandb_records(second / f"run-{run_id}.wandb"))
    assert later and min(later) > 400 and max(later) == 600


def test_wandb_that_cannot_start_is_one_line(chain_config, tmp_path):
    from conftest import assert_one_line_error
    proc = run_cli("train", chain_config("dqn", steps=200), "wandb.enabled=true", "wandb.mode=online",
                   "--out", tmp_path / "r", env_extra={"WANDB_MODE": "online", "HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path),
                              "WANDB_BASE_URL": "http://127.0.0.1:9"})
    assert_one_line_error(proc, "W&B did not start", "nothing was trained or changed")
    assert not (tmp_path / "r").exists()   # a refused new run leaves no directory behind
    run_cli("train", chain_config("dqn", steps=200), "wandb.enabled=true", "wandb.mode=offline", "--replace",
            "--out", tmp_path / "r", check=True)
    assert (tmp_path / "r" / "summary.json").is_file()


def test_a_refused_replace_deletes_nothing_and_replace_keeps_the_users_files(chain_config, tmp_path):
    from conftest import assert_one_line_error, files
    run = tmp_path / "r"
    run_cli("train", chain_config("dqn", steps=200), "--out", run, check=True)
    (run / "analysis.md").write_text("my notes")
    before = files(run)
    proc = run_cli("train", chain_config("dqn", steps=200), "wandb.enabled=true", "wandb.mode=online", "--replace",
                   "--out", run, env_extra={"WANDB_MODE": "online", "HOME": str(tmp_path),
                                            "WANDB_CONFIG_DIR": str(tmp_path), "WANDB_BASE_URL": "http://127.0.0.1:9"})
    assert_one_line_error(proc, "W&B did not start")
    assert files(run) == before and sorted(p.name for p in run.iterdir()) == sorted(
        {p.parts[0] for p in before} | {".lock"})
    proc = run_cli("train", chain_config("dqn", steps=200), "optim.lr=0.002", "--replace", "--out", run, check=True)
    assert "kept what rlsmooth did not write" in proc.stdout and "analysis.md" in proc.stdout
    assert (run / "analysis.md").read_text() == "my notes" and not (run / ".replaced").exists()
    assert "lr: 0.002" in (run / "config.yaml").read_text()


def test_a_resumed_run_sends_wandb_the_steps_its_logs_lack(chain_config, tmp_path):
    """W&B's buffers die with a killed process: the steps its local logs lack up to the checkpoint are
    sent on resume.  Here W&B starts only at the resume, so it lacks every step before it."""
    run = tmp_path / "run"
    cfg = chain_config("dqn", steps=400)
    run_cli("train", cfg, "loop.checkpoint_every=200", "--out", run, check=True)
    (run / "summary.json").unlink()
    run_cli("train", "--resume", run, "--total-steps", "600", "wandb.enabled=true", "wandb.mode=offline", check=True)
    (offline,) = offline_runs(run)
    logged = history(wandb_records(next(offline.glob("run-*.wandb"))))
    expected = {json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()}
    assert set(logged) == expected and min(logged) == 50 and max(logged) == 600
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        step = line.pop("step")
        for key, value in line.items():
            assert logged[step][key] == pytest.approx(value, rel=1e-6), (step, key)
