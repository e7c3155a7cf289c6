"""The process a run lives in: its device, its torch threads, and Ctrl-C as a flag between iterations."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import torch

from rlsmooth.errors import ConfigError


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def env_threads() -> int | None:
    """OMP_NUM_THREADS when it is set to a positive number."""
    pinned = os.environ.get("OMP_NUM_THREADS", "")
    return int(pinned) if pinned.isdigit() and int(pinned) > 0 else None


def set_threads(threads: int) -> int:
    """Torch intra-op threads: ``threads``; for 0, OMP_NUM_THREADS when it is set, else every available
    core.  More threads than cores this process may use get a warning (they spin against each other).
    Returns the number set."""
    count = threads or env_threads() or available_cores()
    if count > available_cores():
        print(f"warning: threads={count} but this process may use {available_cores()} core(s): "
              f"spinning threads that share cores slow the run down", file=sys.stderr)
    torch.set_num_threads(count)
    return count


MMAP_THRESHOLD = 32 << 20    # glibc's largest: blocks up to this size come from (and return to) the heap
TRIM_THRESHOLD = 256 << 20   # freed memory at the heap's top kept for reuse, up to this much


def retain_freed_memory() -> None:
    """Keep freed tensor buffers in the process for reuse (glibc on Linux; elsewhere nothing).

    Every update frees and allocates the same activation and gradient buffers (a few MB each).
    glibc's default serves such blocks with fresh memory mappings once its adaptive threshold
    drifts, and every fresh mapping is paid again in page faults on first touch: about a million
    minor faults per 2,500 steps of a 9-member MinAtar population on this project's CPU, a tenth
    of its time in the kernel.  A fixed threshold keeps them on the heap, where they are reused.
    Large arrays (the replay's frames) are still mapped and returned."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):   # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3   # <malloc.h>
    mallopt(m_mmap_threshold, MMAP_THRESHOLD)
    mallopt(m_trim_threshold, TRIM_THRESHOLD)


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
    """Turn Ctrl-C and SIGTERM (a sweep that is ended, a cluster's stop) into a flag the loop checks
    between iterations, so the checkpoint written on the way out is consistent."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag.requested = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
