"""Running a sweep's jobs on this machine, optionally to a deadline.

A job is one cell, or a population of cells trained by one process.  The scheduler keeps ``workers``
jobs running, prints a line when each starts and ends (with the sweep's ETA), and, given a deadline
(``--time-budget`` / ``--deadline``), starts only what the measured rate says will finish in time:

* the rate is agent steps per second per member, by population size, read from the ``time/sps`` that
  earlier runs of the sweep logged (its own directory and any results directories named); a running
  job's rate plans other jobs once it spans ``MIN_RATE_WINDOWS`` learning windows (a run's first
  windows are fast), and replaces the earlier runs' once it spans ``RATE_WINDOWS``;
* a job is planned as the largest population (up to ``--population``) whose slowest member's
  remaining steps fit before the deadline, with a safety margin; with no rate measured yet, the first
  jobs start and are measured as they run;
* a job whose own rate, early in its life, says it will not finish is stopped (it checkpoints on
  SIGTERM): its cells that started in this call are removed, so nothing half-done is left, and cells
  resumed from an earlier checkpoint keep it; the freed slot is planned again with the rate just
  measured.  The rate is judged as the job's own: the time its process spent ready but waiting for
  a core (other processes on the machine, Linux's ``/proc/<pid>/schedstat``) is taken out, so a
  passing load early in a job's life does not throw its work away;
* a job still running at the deadline (slower than measured: a paused or shared machine) is stopped
  there and kept with its checkpoint, which the next call resumes first where the machine was kept.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from rlsmooth.errors import ConfigError
from rlsmooth.training.rundir import SUMMARY_FILE

SAFETY = 1.15          # planned durations are stretched by this much before they must fit
ROOT = Path(__file__).resolve().parents[2]   # the checkout: holds agents/ and rlsmooth/
START_SECONDS = 15.0   # a job's start-up and exit before any is measured (imports, envs, the final write)
POLL_SECONDS = 5.0     # how often running jobs' rates are read and the deadline checked
EXIT_POLL_SECONDS = 0.1   # how soon an ended job is noticed, so the next one starts at once
UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """'2h30m', '90m', '45s', '1.5h' or plain seconds -> seconds (ConfigError otherwise)."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ConfigError(f"--time-budget {text!r}: give a duration like 2h30m, 90m or 45s")
    return sum(float(a) * UNIT_SECONDS[b] for a, b in parts)


def parse_deadline(text: str, now: datetime | None = None) -> float:
    """'HH:MM' (the next such time) or an ISO date-time -> seconds since the epoch."""
    now = now or datetime.now().astimezone()
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}", text.strip()):
            hours, minutes = map(int, text.strip().split(":"))
            when = now.replace(hour=hours, minute=minutes, second=0, microsecond=0)
            if when <= now:
                when += timedelta(days=1)
        else:
            when = datetime.fromisoformat(text.strip())
            if when.tzinfo is None:
                when = when.astimezone()
    except ValueError:
        raise ConfigError(f"--deadline {text!r}: give HH:MM or an ISO date-time (2026-12-03T01:30)") from None
    return when.timestamp()


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


# -- progress and rates, from what runs log ------------------------------------------------------

RATE_WINDOWS = 10      # log windows the rate is averaged over
# A run's first learning windows are fast (a small replay, the machine often still quiet): on the
# 2-core VM, a MinAtar population of two logged 342 agent steps/s per member in its first learning
# window and 163 over its first 340k agent steps (three processes on the two cores).  A sweep planned
# its next population on that first window: 48m44s, where it took 1h34m.  A rate plans other jobs only
# once it spans this many windows.
MIN_RATE_WINDOWS = 3


class Progress(NamedTuple):
    step: int             # the last logged agent step
    sps: float | None     # agent steps per wall-clock second over the last learning windows
    windows: int          # how many windows that rate spans (at most RATE_WINDOWS)


def progress(run_dir: Path) -> Progress:
    """How far a run directory is, and its rate: agent steps per wall-clock second over its last
    log windows spent wholly learning (``time/sps`` spans a window's evaluation too; a window that
    began before the first update runs far faster and says nothing); None until there is one."""
    path = run_dir / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return Progress(0, None, 0)
    step, last_step, learning, windows = 0, 0, False, []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
            continue
        step = max(step, record["step"])
        sps = record.get("time/sps")
        if not isinstance(sps, (int, float)) or not math.isfinite(sps) or sps <= 0:
            continue
        if learning and record["step"] > last_step:
            windows.append((record["step"] - last_step, (record["step"] - last_step) / sps))
        learning = learning or bool(record.get("train/updates"))
        last_step = record["step"]
    windows = windows[-RATE_WINDOWS:]
    sps = sum(s for s, _ in windows) / sum(t for _, t in windows) if windows else None
    return Progress(step, sps, len(windows))


def measured_rates(dirs: list[Path], cell_file: str) -> dict[int, float]:
    """Per-member agent steps/s by population size, the median over the runs under ``dirs`` whose
    ``sweep_cell.json`` says how many members their process trained: finished runs, and unfinished
    ones whose rate spans at least ``MIN_RATE_WINDOWS`` windows."""
    found = []
    for folder in dirs:
        if not folder.is_dir():
            continue
        for cell_json in folder.glob(f"*/{cell_file}"):
            try:
                size = json.loads(cell_json.read_text()).get("_members")
            except (OSError, ValueError, AttributeError):
                continue
            run = progress(cell_json.parent)
            finished = (cell_json.parent / SUMMARY_FILE).is_file()
            if isinstance(size, int) and size >= 1 and run.sps and (finished or run.windows >= MIN_RATE_WINDOWS):
                found.append((size, run.sps))
    return median_by_size(found)


def median_by_size(rates) -> dict[int, float]:
    """(population size, per-member rate) pairs -> the (upper) median rate of each size."""
    found: dict[int, list[float]] = {}
    for size, sps in rates:
        found.setdefault(size, []).append(sps)
    return {k: sorted(v)[len(v) // 2] for k, v in found.items()}


def rate_for(rates: dict[int, float], size: int) -> float | None:
    """Per-member rate of a population of ``size``: measured, else from the nearest measured size.
    Larger populations are assumed to keep the total rate (each member slower in proportion: their
    step cost grows no faster than the member count), smaller ones to gain as the square root of the
    ratio (a population step has a fixed cost too).  Measured on the 2-core VM, large MinAtar torso, one
    thread: 377, 165 and 110 agent steps/s per member at 1, 3 and 6 members; from 6, the rule says 6 -> 3:
    156 and 6 -> 1: 269, both below what was measured."""
    if size in rates:
        return rates[size]
    if not rates:
        return None
    nearest = min(rates, key=lambda k: (abs(k - size), -k))
    scale = (nearest / size) ** 0.5 if size < nearest else nearest / size
    return rates[nearest] * scale


# -- jobs ------------------------------------------------------------------------------------------

@dataclass
class Job:
    cells: list                  # the sweep's Cell objects
    command: list[str]
    log: Path
    threads: int
    fresh: list = field(default_factory=list)   # cells this call started from nothing
    process: subprocess.Popen | None = None
    started: float = 0.0
    planned: float = 0.0         # the seconds it was planned to take (0: unmeasured)
    start_steps: list = field(default_factory=list)   # its members' steps when it started
    stopped: str = ""            # why the scheduler stopped it, if it did


def end_with_parent() -> None:
    """In a cell's process (Linux): receive SIGTERM when the sweep that started it dies, however it
    dies (SIGKILL included), so no cell trains on unwatched; SIGTERM makes it checkpoint and stop."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def spawn(job: Job) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if job.threads > 0:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(job.threads)
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "a") as f:
        f.write("$ " + " ".join(job.command) + "\n")
        f.flush()
        job.process = subprocess.Popen(job.command, stdout=f, stderr=subprocess.STDOUT, env=env,
                                       preexec_fn=end_with_parent)
    job.started = time.time()
    job.start_steps = [progress(c.run_dir).step for c in job.cells]


def wait_for_an_exit(jobs: list[Job], seconds: float) -> None:
    """Sleep up to ``seconds``, returning as soon as one of the jobs' processes has ended."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if any(job.process.poll() is not None for job in jobs):
            return
        time.sleep(min(EXIT_POLL_SECONDS, max(0.0, end - time.monotonic())))


def waiting_share(pid: int) -> float:
    """The share of its runnable time a process's main thread spent ready but waiting for a core
    (``/proc/<pid>/schedstat``: time on a core, time waiting on a run queue); 0 where unknown.  Time
    asleep (I/O, a GPU, a pause) counts in neither, so only other processes' load raises it."""
    try:
        on_core, waiting = (int(x) for x in Path(f"/proc/{pid}/schedstat").read_text().split()[:2])
    except (OSError, ValueError):
        return 0.0
    return waiting / (on_core + waiting) if on_core + waiting > 0 else 0.0


def own_eta(job: Job, eta: float) -> float:
    """``eta`` at the rate the job would have had with its cores to itself (see :func:`waiting_share`)."""
    if job.process is None:
        return eta
    return eta * (1.0 - waiting_share(job.process.pid))


def stop(job: Job, why: str, grace: float = 120.0) -> None:
    """SIGTERM (the run checkpoints and stops), then wait; SIGKILL after ``grace`` seconds."""
    job.stopped = why
    if job.process is None or job.process.poll() is not None:
        return
    job.process.send_signal(signal.SIGTERM)
    try:
        job.process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        job.process.kill()
        job.process.wait()


def remaining_steps(cell, total_steps: int) -> int:
    return max(0, total_steps - progress(cell.run_dir).step)


def job_eta(job: Job, total_steps: int, rates: dict[int, float]) -> float:
    """Seconds until the job's slowest member finishes, from its members' own latest rates where they
    have logged one, else from the measured rates (0 while nothing is measured)."""
    worst = 0.0
    for cell in job.cells:
        step, sps, _ = progress(cell.run_dir)
        rate = sps or rate_for(rates, len(job.cells))
        if rate is None:
            return 0.0   # nothing measured yet: no reason to stop it
        worst = max(worst, max(0, total_steps - step) / rate)
    return worst


def job_overhead(job: Job, rates: dict[int, float]) -> float:
    """A finished job's wall time beyond what its steps took at its members' measured rate."""
    rate = rate_for(rates, len(job.cells))
    if job.stopped or not rate:
        return 0.0
    steps = max(progress(c.run_dir).step for c in job.cells) - min(job.start_steps or [0])
    return max(0.0, time.time() - job.started - steps / rate)


def clean_fresh(job: Job, is_rlsmooth_dir) -> list[str]:
    """Remove the directories of the cells a stopped job started from nothing (only rlsmooth's files)."""
    removed = []
    for cell in job.fresh:
        if cell.run_dir.is_dir() and is_rlsmooth_dir(cell.run_dir):
            shutil.rmtree(cell.run_dir, ignore_errors=True)
            removed.append(cell.name)
    return removed
