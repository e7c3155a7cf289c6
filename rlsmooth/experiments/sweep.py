"""``rlsmooth sweep``: every cell of games x seeds x variants (x any config key) in its own run dir.

Sweep YAML::

    base: ../minatar_dqn.yaml          # config every cell starts from (relative to this file)
    out: runs/sweeps/minatar_ablation  # sweep directory (relative to the working directory)
    set:                               # overrides for every cell
      loop.total_steps: 200_000
    axes:
      game: [breakout, space_invaders] # shorthand for env.game
      seed: [0, 1]
      variant:                         # named groups of overrides (any axis given as a mapping)
        baseline: {}
        sn_fc: {spectral.layers: [fc]}
        lr_grad: {optim.rho_scaling: lr+grad}
      optim.lr: [1.0e-4, 3.0e-4]       # any other config key
    resources: {num_gpus: 0.25, num_cpus: 1}   # per run, for --backend ray

Each cell runs ``rlsmooth train`` in a subprocess, so one failing run cannot stop the others.
Re-running a sweep skips finished cells (``summary.json`` present), resumes cells that have a
checkpoint, and restarts cells that failed before their first checkpoint.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


from rlsmooth.agents.preflight import load_train_config
from rlsmooth.config.coerce import to_dict
from rlsmooth.config.yaml_files import apply_overrides, load_yaml, parse_yaml
from rlsmooth.errors import ConfigError
from rlsmooth.experiments import schedule
from rlsmooth.experiments.schedule import (ROOT, SAFETY, Job, clean_fresh, end_with_parent, format_seconds,
                                           job_eta, progress, rate_for, remaining_steps)
from rlsmooth.files import atomic_write_text, read_text
from rlsmooth.population.members import shared_key
from rlsmooth.training.rundir import CHECKPOINT, SUMMARY_FILE, has_run_content, in_use
from rlsmooth.training.runtime import available_cores, env_threads

CELL_FILE = "sweep_cell.json"
SHORTHAND = {"game": "env.game", "seed": "seed", "agent": "agent"}


@dataclass
class Cell:
    name: str
    axes: dict                      # axis -> value label, e.g. {"game": "pong", "variant": "sn_fc", "seed": 0}
    overrides: list[str]
    run_dir: Path
    state: str = "pending"          # pending | done | resume | restart
    result: str = ""
    final_return: float | None = None
    log: Path | None = field(default=None)
    shared: str | None = None       # what a population's members must share (None: the agent trains alone)
    total_steps: int = 0            # the cell's loop.total_steps


@dataclass
class Sweep:
    path: Path
    base: Path
    out: Path
    cells: list[Cell]
    resources: dict


def _override(key: str, value) -> str:
    return f"{key}={json.dumps(value) if not isinstance(value, str) else value}"


def narrow_axes(path: Path, axes: dict, extra: list[str]) -> tuple[dict, list[str]]:
    """``--set axes.AXIS=[v, ...]`` keeps those values of an axis (for a named axis, those names); the
    other ``--set`` items stay overrides for every cell."""
    kept = []
    for item in extra:
        if not item.startswith("axes."):
            kept.append(item)
            continue
        key, _, raw = item.partition("=")
        axis = key[len("axes."):]
        if axis not in axes:
            raise ConfigError(f"--set {item}: the sweep has no axis '{axis}' (axes: {', '.join(axes)})")
        values = parse_yaml(raw, path) if raw else None
        values = values if isinstance(values, list) else [values]
        options = axes[axis]
        if isinstance(options, dict):
            missing = [v for v in values if str(v) not in {str(k) for k in options}]
            if missing:
                raise ConfigError(f"--set {item}: axis '{axis}' has no value {missing[0]!r} (values: "
                                  f"{', '.join(map(str, options))})")
            axes[axis] = {k: v for k, v in options.items() if str(k) in {str(x) for x in values}}
        else:
            missing = [v for v in values if v not in options]
            if missing:
                raise ConfigError(f"--set {item}: axis '{axis}' has no value {missing[0]!r} (values: "
                                  f"{', '.join(map(str, options))})")
            axes[axis] = [v for v in options if v in values]
    return axes, kept


def load_sweep(path: str | Path, out: str | None = None, extra: list[str] = ()) -> Sweep:
    path = Path(path)
    spec = parse_yaml(read_text(path, "sweep file"), path) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a sweep is a mapping with base, axes, set, out, resources")
    unknown = sorted(set(spec) - {"base", "axes", "set", "out", "resources", "order", "treatments"})
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key '{unknown[0]}' (valid: axes, base, order, out, resources, set, "
                          f"treatments)")
    if "base" not in spec:
        raise ConfigError(f"{path}: a sweep needs 'base: CONFIG.yaml'")
    base = (path.parent / spec["base"]).resolve()
    load_yaml(base)  # fail early on a missing or broken base config
    axes = spec.get("axes") or {}
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"{path}: 'axes' must map axis names to lists (or, for 'variant', to named overrides)")
    axes, extra = narrow_axes(path, dict(axes), list(extra))
    common = [_override(k, v) for k, v in (spec.get("set") or {}).items()] + list(extra)
    names, choices = [], []
    for axis, values in axes.items():
        if isinstance(values, dict):   # named groups of overrides, e.g. variant: {sn_fc: {spectral.layers: [fc]}}
            if not values:
                raise ConfigError(f"{path}: axis '{axis}' must name at least one group of overrides")
            options = []
            for vname, vset in values.items():
                if vset is not None and not isinstance(vset, dict):
                    raise ConfigError(f"{path}: {axis} '{vname}' must be a mapping of overrides")
                options.append((str(vname), [_override(k, v) for k, v in (vset or {}).items()]))
        else:
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{path}: axis '{axis}' must be a non-empty list, or a mapping of named overrides")
            key = SHORTHAND.get(axis, axis)
            options = [(v, [_override(key, v)]) for v in values]
        names.append(axis)
        choices.append(options)
    sweep_out = Path(out or spec.get("out") or Path("runs") / "sweeps" / path.stem)
    cells = []
    for combo in itertools.product(*choices):
        labels = {axis: value for axis, (value, _) in zip(names, combo)}
        name = "__".join(f"{axis}={value}" for axis, value in labels.items()).replace("/", "_")
        overrides = common + [o for _, ovs in combo for o in ovs]
        cells.append(Cell(name, labels, overrides, sweep_out / name))
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.name in seen:
            raise ConfigError(f"{path}: two cells would share the run directory {cell.run_dir} "
                              f"(duplicate value in an axis: {cell.name})")
        seen[cell.name] = cell
    resolved: dict[str, Cell] = {}
    for cell in cells:  # validate every cell's config before running anything
        cfg = load_train_config(apply_overrides(load_yaml(base), list(cell.overrides)))
        key = json.dumps(to_dict(cfg), sort_keys=True, default=str)   # values after type coercion
        if key in resolved:
            raise ConfigError(f"{path}: cells {resolved[key].name} and {cell.name} resolve to the same config "
                              f"(an axis lists one value twice, e.g. 1 and 1.0)")
        resolved[key] = cell
        cell.shared = shared_key(cfg)
        cell.total_steps = cfg.loop.total_steps
    treatments = spec.get("treatments") or []
    if not isinstance(treatments, list) or any(t not in names or t in ("game", "seed") for t in treatments):
        raise ConfigError(f"{path}: 'treatments' lists axes compared with the baseline (not game or seed), each one "
                          f"of: {', '.join(n for n in names if n not in ('game', 'seed'))}")
    for cell in cells:
        if treatments:
            cell.axes["_treatments"] = list(treatments)
    order = spec.get("order") or []
    if not isinstance(order, list) or any(axis not in names for axis in order):
        raise ConfigError(f"{path}: 'order' lists axes (outermost first), each one of: {', '.join(names)}")
    rank = [names.index(a) for a in order] + [i for i, a in enumerate(names) if a not in order]
    index = {axis: {str(value): i for i, (value, _) in enumerate(options)} for axis, options in zip(names, choices)}
    cells.sort(key=lambda c: [index[names[i]][str(c.axes[names[i]])] for i in rank])
    return Sweep(path, base, sweep_out, cells, spec.get("resources") or {})


def cell_state(run_dir: Path) -> str:
    """finished | running (another process holds the cell) | resume | restart | pending."""
    if run_dir.is_dir() and in_use(run_dir):
        return "running"
    if (run_dir / SUMMARY_FILE).is_file():
        return "finished"
    if (run_dir / CHECKPOINT).is_file():
        return "resume"
    if run_dir.exists() and (not run_dir.is_dir() or has_run_content(run_dir)):
        return "restart"
    return "pending"   # absent, empty, or only rlsmooth's own leftovers


def sweep_cell_state(cell: Cell, results: list[Path]) -> str:
    """``cell_state`` of the cell's run directory, or "finished (results)" when a ``results`` directory
    holds the cell finished."""
    state = cell_state(cell.run_dir)
    if state != "finished" and any(cell_state(Path(r) / cell.name) == "finished" for r in results):
        return "finished (results)"
    return state


def cell_command(cell: Cell, base: Path, threads: int) -> list[str]:
    """``threads`` is written into a new cell's config (a resumed cell keeps the value it started with)."""
    if cell.state == "resume":
        return [sys.executable, "-m", "rlsmooth", "train", "--resume", str(cell.run_dir)]
    command = [sys.executable, "-m", "rlsmooth", "train", str(base), f"threads={threads}", *cell.overrides,
               "loop.progress=false",
               "--out", str(cell.run_dir)]
    return command + (["--replace"] if cell.state == "restart" else [])


def run_cell_process(command: list[str], log: str, cell_json: str, run_dir: str, axes: dict,
                     threads: int = 0) -> tuple[int, str]:
    """Run one cell as a subprocess (also the body of the Ray task); returns (exit code, last line).

    The cell's axes go into ``sweep_cell.json`` before it starts, so a report labels a cell that is
    still running as it labels a finished one.  ``threads`` > 0 caps the run's intra-op threads:
    runs sharing cores with spinning OpenMP threads slow down many-fold.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if threads > 0:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    if run_dir:
        label_cell(Path(run_dir), Path(cell_json), axes)
    with open(log, "a") as f:
        f.write("$ " + " ".join(command) + "\n")
        f.flush()
        code = subprocess.call(command, stdout=f, stderr=subprocess.STDOUT, env=env, preexec_fn=end_with_parent)
    lines = [l for l in Path(log).read_text().splitlines() if l.strip()]
    return code, (lines[-1] if lines else "")


def label_cell(run_dir: Path, cell_json: Path, axes: dict) -> None:
    """Write the cell's axes beside its run (a directory that is a file is left to fail in its run)."""
    if not run_dir.exists() or run_dir.is_dir():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cell_json, json.dumps(axes))


def run_sweep(sweep: Sweep, backend: str = "local", workers: int = 1, dry_run: bool = False,
              ray_address: str | None = None, population: int = 0, deadline: float | None = None,
              results: list[Path] = ()) -> list[Cell]:
    """Run the cells that are not finished.  ``deadline`` (seconds since the epoch; local backend) starts
    only what will finish by then; cells finished under ``results`` directories count as finished."""
    for cell in sweep.cells:
        cell.state = sweep_cell_state(cell, results)
        cell.log = sweep.out / "logs" / f"{cell.name}.log"
    todo = [c for c in sweep.cells if c.state in ("pending", "resume", "restart")]
    todo.sort(key=lambda c: c.state != "resume")   # partial runs whose checkpoints survived go first
    if dry_run:
        print_plan(sweep, todo, population)
        return sweep.cells
    sweep.out.mkdir(parents=True, exist_ok=True)
    threads = (env_threads() or max(1, available_cores() // max(1, workers)) if backend == "local"
               else int(sweep.resources.get("num_cpus", 1)))
    if backend == "ray":
        if deadline is not None:
            raise ConfigError("--time-budget and --deadline plan for this machine's workers: use --backend local")
        groups = pack(todo, population) if population > 1 else [[c] for c in todo]
        jobs = [population_job(group, sweep, threads) if len(group) > 1 else
                (cell_command(group[0], sweep.base, threads), str(group[0].log), str(group[0].run_dir / CELL_FILE),
                 str(group[0].run_dir), group[0].axes, threads) for group in groups]
        for group, (code, last) in zip(groups, _run_ray(jobs, sweep.resources, ray_address)):
            for cell in group:
                ok = code == 0 or (len(group) > 1 and (cell.run_dir / SUMMARY_FILE).is_file())
                cell.state = "finished" if ok else f"failed ({code})"
                cell.result = last
    else:
        run_local(sweep, todo, workers, population, threads, deadline, list(results))
    for cell in sweep.cells:
        cell.final_return = final_eval_return(cell.run_dir)
        if cell.state == "running":
            cell.state = "running elsewhere"
        if not cell.state.startswith("failed") and summary_says_diverged(cell.run_dir):
            cell.state = "diverged"
    print_summary(sweep.cells)
    return sweep.cells


def print_status(sweep: Sweep, results: list[Path] = ()) -> list[Cell]:
    """``--status``: every cell's state, step, last evaluation and ETA, read from the run directories
    (a sweep running in another process, or one that has ended)."""
    width = max(len(c.name) for c in sweep.cells)
    print(f"{'cell':{width}s}  {'state':18s}  {'step':>17s}  {'last eval':>9s}  ETA")
    for cell in sweep.cells:
        run_dir = next((Path(r) / cell.name for r in results if cell_state(Path(r) / cell.name) == "finished"),
                       cell.run_dir)
        state = cell_state(run_dir)
        state = {"running": "running", "resume": "stopped (resumable)", "restart": "failed / partial"}.get(state, state)
        step, rate, _ = progress(run_dir)
        ret = final_eval_return(run_dir)
        eta = format_seconds((cell.total_steps - step) / rate) if state == "running" and rate else "-"
        if summary_says_diverged(run_dir):
            state = "diverged"
        print(f"{cell.name:{width}s}  {state:18s}  {f'{step:,}/{cell.total_steps:,}':>17s}  "
              f"{'-' if ret is None else f'{ret:.2f}':>9s}  {eta}")
    return sweep.cells


def print_plan(sweep: Sweep, todo: list[Cell], population: int) -> None:
    """``--dry-run``: every cell's state, and the processes the cells to run would be packed into."""
    for cell in sweep.cells:
        print(f"{cell.state:8s} {cell.name}  ->  {cell.run_dir}")
    print(f"{len(sweep.cells)} cells, {len(todo)} to run")
    if population > 1 and todo:   # the packing the local backend will start, in its order
        queue, i = list(todo), 0
        while queue:
            group, _ = _plan_job(queue, population, {1: 1.0}, None)
            for cell in group:
                queue.remove(cell)
            i += 1
            print(f"process {i}: {job_name(group)}: {', '.join(c.name for c in group)}")


def job_name(group: list[Cell]) -> str:
    """What a job holds, for its log's name: the one cell, or the axis values its members share and
    how many members it has (``game=asterix__seed=0__pop6``)."""
    if len(group) == 1:
        return group[0].name
    shared = [f"{axis}={value}" for axis, value in group[0].axes.items()
              if not axis.startswith("_") and all(str(c.axes[axis]) == str(value) for c in group)]
    return "__".join(shared + [f"pop{len(group)}"]).replace("/", "_")


def _plan_job(queue: list[Cell], population: int, rates: dict, deadline: float | None,
              overhead: float = 0.0) -> tuple[list[Cell], float]:
    """The next job from the front of the queue: the largest population (up to ``population``, of cells
    that may share a process) that fits before the deadline; ([], 0) when nothing fits."""
    now = time.time()
    if deadline is not None and now >= deadline:
        return [], 0.0
    for head in queue:
        group = [head]
        if population > 1 and head.shared:
            group += [c for c in queue if c is not head and c.shared == head.shared][:population - 1]
        for size in range(len(group), 0, -1):
            members = group[:size]
            rate = rate_for(rates, size)
            if rate is None:            # nothing measured yet: start it and measure it
                return members, math.inf
            seconds = (max(remaining_steps(c, c.total_steps) for c in members) / rate + overhead) * SAFETY
            if deadline is None or now + seconds <= deadline:
                return members, seconds
    return [], 0.0


def run_local(sweep: Sweep, todo: list[Cell], workers: int, population: int, threads: int,
              deadline: float | None, results: list[Path] = ()) -> None:
    """Keep ``workers`` jobs running, a line for each start and end; see rlsmooth/experiments/schedule.py."""
    from rlsmooth.training.rundir import has_run_content, is_run_directory
    queue, running, total, ended = list(todo), [], len(todo), 0
    rate_dirs = [sweep.out, *map(Path, results)]   # earlier sessions' runs too
    rates = on_disk = schedule.measured_rates(rate_dirs, CELL_FILE)
    overhead = schedule.START_SECONDS   # a job's time beyond its training windows: start-up, writing, exit
    start = time.time()
    while queue or running:
        while len(running) < max(1, workers) and queue:
            _reread_states(queue, results)
            if not queue:
                break
            if deadline is not None and not rates and running:
                break   # one job measures the rate before the others are planned with it
            group, seconds = _plan_job(queue, population, rates, deadline, overhead)
            if not group:
                break
            for cell in group:
                queue.remove(cell)
            job = _start_job(group, sweep, threads)
            job.planned = seconds if math.isfinite(seconds) else 0.0
            running.append(job)
            eta = "" if not math.isfinite(seconds) else f", about {schedule.format_seconds(seconds / schedule.SAFETY)}"
            print(f"[{ended + sum(len(j.cells) for j in running)}/{total}] started {job_name(group)} ({len(group)} "
                  f"cell{'s' if len(group) > 1 else ''}{eta}; log {job.log})", flush=True)
        if not running:
            break
        schedule.wait_for_an_exit(running, schedule.POLL_SECONDS)
        for job in list(running):
            code = job.process.poll()
            if code is None:
                if deadline is not None:
                    _watch(job, deadline, rates, queue)
                continue
            running.remove(job)
            overhead = max(overhead, schedule.job_overhead(job, rates))
            on_disk = schedule.measured_rates(rate_dirs, CELL_FILE)   # with the runs that just ended
            measured = rate_text(job)
            _finish_job(job, code, lambda d: is_run_directory(d) or not has_run_content(d), queue)
            if job.stopped.startswith("stopped:"):
                print(f"stopped {job_name(job.cells)}: it would not finish by the deadline at its measured "
                      f"{measured}; its {len(job.cells)} cell(s) go back to the queue", flush=True)
                continue
            ended += len(job.cells)
            for cell in job.cells:
                if cell.state == "finished":
                    ret = final_eval_return(cell.run_dir)
                    done = sum(c.state == "finished" for c in todo)
                    per_cell = (time.time() - start) / max(1, done)
                    left = (len(queue) + sum(len(j.cells) for j in running)) * per_cell / max(1, workers)
                    print(f"[{ended}/{total}] finished {cell.name}: final eval return "
                          f"{'-' if ret is None else f'{ret:.2f}'} (sweep ETA {schedule.format_seconds(left)})",
                          flush=True)
                else:
                    print(f"[{ended}/{total}] {cell.state}: {cell.name}", flush=True)
        rates = planning_rates(on_disk, running)
    for cell in queue:
        cell.state = "not started (budget)"
    if deadline is not None:
        finished = sum(c.state == "finished" for c in todo)
        print(f"time budget: {finished} of {total} cells finished in "
              f"{schedule.format_seconds(time.time() - start)}; {len(queue)} not started, "
              f"{sum(c.state.startswith('stopped') for c in todo)} stopped")


def _reread_states(queue: list[Cell], results: list[Path]) -> None:
    """Re-read each queued cell's state just before a job is planned: another process (a second sweep
    on the same directory) may have started, finished or checkpointed it since this sweep read it.  A
    stale state would start a finished cell again, or, worse, start one over (``--replace``)."""
    for cell in list(queue):
        state = sweep_cell_state(cell, results)
        if state in ("pending", "resume", "restart"):
            cell.state = state
            continue
        queue.remove(cell)
        cell.state = "running elsewhere" if state == "running" else f"{state}, by another process"
        print(f"skipped {cell.name}: {cell.state}", flush=True)


def rate_text(job) -> str:
    rates = [r for c in job.cells if (r := progress(c.run_dir).sps)]
    return f"{min(rates):.0f} agent steps/s per member" if rates else "rate"


def _start_job(group: list[Cell], sweep: Sweep, threads: int):
    fresh = [c for c in group if c.state in ("pending", "restart")]
    if len(group) > 1:
        command, log, *_ = population_job(group, sweep, threads)
    else:
        cell = group[0]
        label_cell(cell.run_dir, cell.run_dir / CELL_FILE, {**cell.axes, "_members": 1})
        command, log = cell_command(cell, sweep.base, threads), str(cell.log)
    job = Job(group, command, Path(log), threads, fresh)
    schedule.spawn(job)
    return job


def _watch(job, deadline: float, rates: dict, queue: list[Cell]) -> None:
    """Stop a job that will not finish by the deadline (its own rate says so), or that reached it."""
    now = time.time()
    if now >= deadline:
        schedule.stop(job, "stopped at the deadline (resumable)")
    elif now - job.started < max(300.0, 0.1 * job.planned) and \
            now + schedule.own_eta(job, job_eta(job, job.cells[0].total_steps, rates)) > deadline:
        # only early in a job, and at its own rate (other processes' load taken out): later, a slow
        # stretch (a paused or shared machine) must not throw work away
        schedule.stop(job, "stopped: it would not finish by the deadline")


INTERRUPTED = 130   # a run's exit status after it checkpointed on Ctrl-C or SIGTERM


def _finish_job(job, code: int, is_rlsmooth_dir, queue: list[Cell]) -> None:
    for cell in job.cells:
        if (cell.run_dir / SUMMARY_FILE).is_file() and (code in (0, 3) or len(job.cells) > 1 or job.stopped):
            cell.state = "finished"
        elif job.stopped.startswith("stopped:"):   # planned again with the rate it measured
            cell.state = "pending" if cell in job.fresh else cell_state(cell.run_dir)
        elif job.stopped:   # late at the deadline: kept with its checkpoint, which the next call resumes
            cell.state = job.stopped
        elif code == INTERRUPTED and cell_state(cell.run_dir) == "resume":
            # stopped from outside (SIGTERM, Ctrl-C) after writing its checkpoint: the next call resumes it
            cell.state = "stopped (resumable)"
        else:
            cell.state = f"failed ({code})"
        lines = [line for line in job.log.read_text().splitlines() if line.strip()] if job.log.is_file() else []
        cell.result = lines[-1] if lines else ""
    if job.stopped.startswith("stopped:"):   # nothing half-done is left: the cells it started from nothing go
        clean_fresh(job, is_rlsmooth_dir)
        again = [c for c in job.cells if c.state in ("pending", "resume", "restart")]
        for cell in again:
            cell.state = cell_state(cell.run_dir)
        queue[:0] = again


def planning_rates(measured: dict[int, float], running: list) -> dict[int, float]:
    """The rates new jobs are planned with, by population size (the median of the members' latest
    rates): a running job's once it spans ``RATE_WINDOWS`` windows (this machine, now); else the runs
    measured on disk; else a running job's from ``MIN_RATE_WINDOWS`` windows.  A job's first windows
    alone must not plan the rest: they run fast, and a population planned on them does not finish by
    the deadline."""
    latest = [(len(job.cells), progress(cell.run_dir)) for job in running for cell in job.cells]

    def spanning(windows: int) -> dict[int, float]:
        return schedule.median_by_size((size, run.sps) for size, run in latest if run.sps and run.windows >= windows)

    return {**spanning(schedule.MIN_RATE_WINDOWS), **measured, **spanning(schedule.RATE_WINDOWS)}


def pack(cells: list[Cell], size: int) -> list[list[Cell]]:
    """Cells that may share a process, in populations of at most ``size`` (the others alone)."""
    groups: dict[str, list[Cell]] = {}
    alone = []
    for cell in cells:
        (groups.setdefault(cell.shared, []) if cell.shared else alone).append(cell)
    packed = [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]
    return packed + [[c] for c in alone]


def population_job(group: list[Cell], sweep: Sweep, threads: int) -> tuple:
    """A population's manifest (written now, with its cells' labels) and the subprocess that trains it."""
    from rlsmooth.population.manifest import write_manifest
    name = job_name(group)
    manifest = sweep.out / "populations" / f"{name}.json"
    members = []
    for cell in group:
        label_cell(cell.run_dir, cell.run_dir / CELL_FILE, {**cell.axes, "_members": len(group)})
        members.append({"run_dir": str(cell.run_dir.resolve()), "base": str(sweep.base),
                        "overrides": [f"threads={threads}", *cell.overrides, "loop.progress=false"],
                        "replace": cell.state == "restart"})
    write_manifest(manifest, members)
    command = [sys.executable, "-m", "rlsmooth", "population", str(manifest)]
    return command, str(sweep.out / "logs" / f"{name}.log"), "", "", {}, threads


def _run_ray(jobs: list, resources: dict, address: str | None) -> list[tuple[int, str]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    task = ray.remote(num_cpus=resources.get("num_cpus", 1), num_gpus=resources.get("num_gpus", 0))(run_cell_process)
    return ray.get([task.remote(*job) for job in jobs])


def summary_says_diverged(run_dir: Path) -> bool:
    try:
        return bool(json.loads((run_dir / SUMMARY_FILE).read_text()).get("diverged"))
    except (OSError, ValueError, AttributeError):
        return False


def final_eval_return(run_dir: Path) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    value = None
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "eval/episode_return" in record:
            value = record["eval/episode_return"]
    return value


def print_summary(cells: list[Cell]) -> None:
    width = max(len(c.name) for c in cells)
    print(f"{'cell':{width}s}  {'state':16s}  final eval return")
    for c in cells:
        ret = f"{c.final_return:.2f}" if c.final_return is not None else "-"
        print(f"{c.name:{width}s}  {c.state:16s}  {ret}")
    failed = [c for c in cells if c.state.startswith("failed")]
    for c in failed:
        print(f"failed: {c.name}: {c.result}  (log: {c.log})")
