"""Run directories: resolved config with provenance, and the no-overwrite rule."""
from __future__ import annotations

import contextlib
import platform
import signal
import threading
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

import torch
import yaml

from rlsmooth.config import ConfigError, parse_yaml, read_text

CONFIG_FILE = "config.yaml"
CHECKPOINT = Path("checkpoints") / "latest.pt"


def prepare_new(run_dir: Path, replace: bool) -> Path:
    """Create ``run_dir``; refuse an existing non-empty one unless ``replace`` says to wipe it."""
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        if not replace:
            raise ConfigError(f"run directory {run_dir} already exists; use --resume {run_dir} to continue it "
                              f"or --replace to start it over")
        if not (run_dir / CONFIG_FILE).exists():
            raise ConfigError(f"--replace refused: {run_dir} does not look like an rlsmooth run directory")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


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
                "cpu_count": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    return {"git_commit": _git_commit(), "python": platform.python_version(), "packages": versions,
            "hardware": hardware, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_config(run_dir: Path, config: dict, meta: dict) -> None:
    text = yaml.safe_dump({**config, "meta": meta}, sort_keys=False)
    tmp = run_dir / (CONFIG_FILE + ".tmp")
    tmp.write_text(text)
    tmp.replace(run_dir / CONFIG_FILE)


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda requested but no CUDA device is available")
    return torch.device(name)


class StopFlag:
    requested = False


@contextlib.contextmanager
def interrupt_guard():
    """Turn Ctrl-C into a flag the loop checks between iterations, so a checkpoint is consistent."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
