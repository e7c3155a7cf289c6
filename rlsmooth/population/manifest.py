"""A population on disk: a manifest (``population.json``) naming each member's run directory and
config (a base YAML and overrides).  Each member directory is an ordinary run directory: it resumes,
evaluates and compares alone as a solo run's does.  Running a manifest starts the members that have
not started, resumes those with a checkpoint and leaves finished ones alone."""
from __future__ import annotations

import json
from pathlib import Path

from rlsmooth.agents.preflight import load_train_config
from rlsmooth.config.yaml_files import apply_overrides, load_yaml
from rlsmooth.errors import ConfigError, UserError, one_line
from rlsmooth.files import atomic_write_text, read_text
from rlsmooth.population.loop import train_population
from rlsmooth.training.rundir import (CHECKPOINT, finished_reason, lock_existing, prepare_new, read_config, settle_replace,
                                      read_summary)

MANIFEST = "population.json"


def write_manifest(path: Path, members: list[dict]) -> None:
    """``members``: {"run_dir", "base", "overrides"} each; run_dir relative to the manifest's folder or absolute."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"members": members}, indent=1))


def read_manifest(path: Path) -> list[dict]:
    try:
        data = json.loads(read_text(path, "population manifest"))
        members = data["members"]
        assert isinstance(members, list) and members and all(isinstance(m, dict) and "run_dir" in m for m in members)
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError):
        raise ConfigError(f"{path} is not a population manifest (a JSON object with a list of members)") from None
    return members


def run_manifest(path: Path) -> tuple[list, list[str]]:
    """Train the manifest's members that are not finished; returns (members trained, lines about the others)."""
    entries = read_manifest(path)
    cfgs, dirs, resume, locks, notes = [], [], [], [], []
    try:
        for entry in entries:
            run_dir = Path(entry["run_dir"]) if Path(entry["run_dir"]).is_absolute() else path.parent / entry["run_dir"]
            try:
                if (run_dir / CHECKPOINT).is_file():
                    cfg = load_train_config(read_config(run_dir))
                    lock = lock_existing(run_dir)
                    done = read_summary(run_dir)
                    if done is not None and finished_reason(done, cfg):
                        lock.release()
                        notes.append(f"{run_dir}: {finished_reason(done, cfg)}")
                        continue
                    resumed = True
                else:
                    cfg = load_train_config(apply_overrides(load_yaml(entry["base"]), list(entry.get("overrides", []))))
                    lock, resumed = prepare_new(run_dir, replace=bool(entry.get("replace"))), False
                    settle_replace(run_dir, keep_new=True)   # a restarted cell: its old files go
            except UserError as exc:
                notes.append(f"failed: {run_dir}: {one_line(exc)}")
                continue
            cfgs.append(cfg)
            dirs.append(run_dir)
            resume.append(resumed)
            locks.append(lock)
        members = train_population(cfgs, dirs, resume) if cfgs else []
    finally:
        for lock in locks:
            lock.release()
    return members, notes
