"""Run directories: resolved config with provenance, the no-overwrite rule, and one writer at a time."""
from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

import torch
import yaml

from rlsmooth.config.yaml_files import parse_yaml
from rlsmooth.errors import ConfigError, UserError
from rlsmooth.files import TEMP_SUFFIX, atomic_write_text, read_text, remove_temp_files
from rlsmooth.training.runtime import available_cores

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".lock"
CHECKPOINT = Path("checkpoints") / "latest.pt"


class RunLock:
    """An exclusive lock on a run directory for the life of the process that trains in it.

    A second ``train`` (or a sweep launched twice, or a retried Ray task) on the same directory is
    refused with one line instead of writing into files that belong to another run.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None
        self.kept: list[str] = []    # a --replace's files that rlsmooth did not write, left where they were

    def acquire(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot use run directory {self.path.parent}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UserError(f"run directory {self.path.parent} is in use by another rlsmooth process; "
                            f"wait for it to finish or stop it first") from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


SIDECAR_FILES = (LOCK_FILE, "sweep_cell.json")
"""Files rlsmooth keeps beside a run's own (the lock; the sweep's record of a cell's axes): never run content."""
MARKER = {"written_by": "rlsmooth"}
"""What every config.yaml rlsmooth writes carries in its ``meta``: how --replace knows a run directory."""


def _leftover(path: Path) -> bool:
    """rlsmooth's own sidecar files, and temp files of its interrupted writes (``<name>.<random>.tmp``)."""
    return path.name in SIDECAR_FILES or (path.is_file() and path.name.endswith(TEMP_SUFFIX)
                                          and path.name.split(".", 1)[0] in ("config", "summary", "metrics"))


def is_run_directory(run_dir: Path) -> bool:
    """True when ``run_dir`` holds a config.yaml that rlsmooth wrote (its meta says so)."""
    try:
        data = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    meta = data.get("meta") if isinstance(data, dict) else None
    if not isinstance(meta, dict):
        return False
    legacy = isinstance(meta.get("packages"), dict) and "rlsmooth" in meta["packages"] and "git_commit" in meta
    return meta.get("written_by") == MARKER["written_by"] or legacy


def _content(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.iterdir() if not _leftover(p)] if run_dir.is_dir() else []


def has_run_content(run_dir: Path) -> bool:
    """Anything in ``run_dir`` beyond rlsmooth's own lock, sidecar and temp files."""
    return bool(_content(run_dir))


def in_use(run_dir: Path) -> bool:
    """True while another process holds the run directory's lock (it is training there)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)   # closing releases a lock this call took
    return False


REPLACED = ".replaced"
"""Where ``--replace`` keeps the old run's files until the new run has started (then they go)."""


def written_by_rlsmooth(path: Path) -> bool:
    """A file or folder of a run directory that rlsmooth writes (what ``--replace`` may delete)."""
    return (path.name in (CONFIG_FILE, "metrics.jsonl", SUMMARY_FILE, CHECKPOINT.parent.name, "wandb_run_id", "wandb",
                          REPLACED) or path.name.startswith("events.out.tfevents.") or _leftover(path))


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def settle_replace(run_dir: Path, keep_new: bool) -> None:
    """After a ``--replace`` start: ``keep_new`` drops the old run's files; otherwise the new attempt's
    files go and the old run's come back, as they were."""
    staged = run_dir / REPLACED
    if not staged.is_dir():
        return
    if keep_new:
        shutil.rmtree(staged, ignore_errors=True)
        return
    for path in run_dir.iterdir():
        if path.name != REPLACED and path.name not in SIDECAR_FILES and written_by_rlsmooth(path):
            _remove(path)
    for path in staged.iterdir():
        path.rename(run_dir / path.name)
    staged.rmdir()


def prepare_new(run_dir: Path, replace: bool) -> RunLock:
    """Lock ``run_dir`` and make sure it is empty; an existing run is refused unless ``replace`` wipes it.

    A directory holding only rlsmooth's own lock, sidecar and temp files counts as empty (a run killed
    while writing its first config.yaml leaves only those).  Nothing is written, the lock included,
    before the directory is known to be empty or an rlsmooth run directory to replace; the check is
    repeated under the lock, so two processes started together cannot both pass it.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file, not a directory")
    _refuse_unless_free(run_dir, replace)
    lock = RunLock(run_dir).acquire()
    try:
        _refuse_unless_free(run_dir, replace)
        staged = run_dir / REPLACED
        if staged.exists():   # an earlier --replace that never settled: its files are the old run's
            _remove(staged)
        lock.kept = sorted(p.name for p in run_dir.iterdir() if p.name not in SIDECAR_FILES
                           and not written_by_rlsmooth(p)) if replace else []
        for path in list(run_dir.iterdir()):
            if path.name in SIDECAR_FILES:
                continue
            if replace and written_by_rlsmooth(path) and not _leftover(path):
                staged.mkdir(exist_ok=True)
                path.rename(staged / path.name)   # deleted once the new run has started, restored otherwise
            elif _leftover(path):
                _remove(path)
    except BaseException:
        lock.release()
        raise
    return lock


def _refuse_unless_free(run_dir: Path, replace: bool) -> None:
    if not _content(run_dir):
        return
    ours = is_run_directory(run_dir)
    if not replace:
        hint = (f"use --resume {run_dir} to continue it or --replace to start it over" if ours
                else "it holds files rlsmooth did not write: choose another --out")
        raise UserError(f"run directory {run_dir} already exists; {hint}")
    if not ours:
        raise UserError(f"--replace refused: {run_dir} is not an rlsmooth run directory (no config.yaml written by "
                        f"rlsmooth); nothing was deleted")


def lock_existing(run_dir: Path) -> RunLock:
    """Lock a run directory to resume it, and delete temp files left by writes that a kill interrupted."""
    lock = RunLock(run_dir).acquire()
    for folder in (run_dir, run_dir / CHECKPOINT.parent):
        if folder.is_dir():
            remove_temp_files(folder)
    return lock


def default_run_dir(agent: str, suite: str, game: str, seed: int) -> Path:
    return Path("runs") / f"{agent}-{suite}-{game}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("-dirty" if dirty else "")


def provenance(device: torch.device) -> dict:
    versions = {}
    for package in ("torch", "numpy", "gymnasium", "ale-py", "minatar", "rlsmooth"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    hardware = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                "cpu_count": available_cores(), "torch_threads": torch.get_num_threads(),
                "device": str(device)}
    if device.type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    return {"git_commit": _git_commit(), "python": platform.python_version(), "packages": versions,
            "hardware": hardware, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_config(run_dir: Path, config: dict, meta: dict) -> None:
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump({**config, "meta": {**MARKER, **meta}}, sort_keys=False))


def record_resume(run_dir: Path, step: int, changes: dict, config: dict) -> None:
    """Write the resumed run's resolved ``config`` into config.yaml, noting in its meta which keys
    changed (allowed) when the run resumed at ``step``."""
    data = read_config(run_dir)
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    resumed = meta.get("resumed") if isinstance(meta.get("resumed"), list) else []
    resumed.append({"step": step, "changed": {k: [a, b] for k, (a, b) in changes.items()}})
    atomic_write_text(run_dir / CONFIG_FILE,
                      yaml.safe_dump({**config, "meta": {**meta, "resumed": resumed}}, sort_keys=False))


def write_summary(run_dir: Path, summary: dict) -> None:
    """Marks a run as finished (sweeps skip it, resume leaves it alone)."""
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary_record(summary), indent=1))


SUMMARY_INTEGERS = ("step", "updates", "diverged_after_step")


def summary_record(summary: dict) -> dict:
    """summary.json as documented: integer ``step`` and ``updates`` (agent steps, gradient updates),
    boolean ``diverged`` (with the integer ``diverged_after_step`` when true), ``stopped_at_return``
    (the target return, or null), and the last evaluation's floats."""
    record = {"step": 0, "updates": 0, "diverged": False, "stopped_at_return": None}
    for key, value in summary.items():
        if isinstance(value, bool) or value is None:
            record[key] = value
        elif key in SUMMARY_INTEGERS:
            record[key] = int(value)
        else:
            record[key] = float(value)
    return record


def read_summary(run_dir: Path) -> dict | None:
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(read_text(path, "run summary"))
    except json.JSONDecodeError:
        raise UserError(f"{path} is not valid JSON; delete it to let --resume finish the run again") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a summary mapping; delete it to let --resume finish the run again")
    return data


def finished_reason(done: dict, cfg) -> str | None:
    """Why a run with a summary has nothing left to do, or None when its budget now reaches further."""
    if done.get("diverged"):
        return (f"diverged after step {int(done.get('diverged_after_step', 0)):,}; nothing to resume "
                f"(--replace starts it over)")
    if done.get("stopped_at_return") is not None:
        return f"stopped at step {int(done['step']):,}, past loop.stop_return; nothing to resume"
    if done.get("step", 0) >= cfg.loop.total_steps:
        return f"finished at step {int(done['step']):,}; nothing to resume (its summary is kept)"
    return None


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise ConfigError(f"run directory not found: {run_dir}")
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {CONFIG_FILE}; not an rlsmooth run directory")
    data = parse_yaml(read_text(path, "run config"), path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a config mapping")
    return data
