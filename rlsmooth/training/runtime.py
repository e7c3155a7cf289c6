"""The process a run lives in: its device, its torch threads, and Ctrl-C as a flag between iterations."""
from __future__ import annotations

import contextlib
import os
import signal
import threading

import torch

from rlsmooth.errors import ConfigError


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int) -> int:
    """Torch intra-op threads: ``threads``; for 0, OMP_NUM_THREADS when it is set, else every available
    core.  Returns the number set."""
    pinned = os.environ.get("OMP_NUM_THREADS", "")
    count = threads or (int(pinned) if pinned.isdigit() and int(pinned) > 0 else available_cores())
    torch.set_num_threads(count)
    return count


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
