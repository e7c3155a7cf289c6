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
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


from rlsmooth.agents.preflight import load_train_config
from rlsmooth.config.coerce import to_dict
from rlsmooth.config.yaml_files import apply_overrides, load_yaml, parse_yaml
from rlsmooth.errors import ConfigError
from rlsmooth.files import atomic_write_text, read_text
from rlsmooth.population.members import shared_key
from rlsmooth.training.rundir import CHECKPOINT, SUMMARY_FILE, has_run_content, in_use
from rlsmooth.training.runtime import available_cores, env_threads

CELL_FILE = "sweep_cell.json"
SHORTHAND = {"game": "env.game", "seed": "seed", "agent": "agent"}
ROOT = Path(__file__).resolve().parents[2]   # the checkout: holds agents/ and rlsmooth/


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


@dataclass
class Sweep:
    path: Path
    base: Path
    out: Path
    cells: list[Cell]
    resources: dict


def _override(key: str, value) -> str:
    return f"{key}={json.dumps(value) if not isinstance(value, str) else value}"


def load_sweep(path: str | Path, out: str | None = None, extra: list[str] = ()) -> Sweep:
    path = Path(path)
    spec = parse_yaml(read_text(path, "sweep file"), path) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a sweep is a mapping with base, axes, set, out, resources")
    unknown = sorted(set(spec) - {"base", "axes", "set", "out", "resources"})
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key '{unknown[0]}' (valid: axes, base, out, resources, set)")
    if "base" not in spec:
        raise ConfigError(f"{path}: a sweep needs 'base: CONFIG.yaml'")
    base = (path.parent / spec["base"]).resolve()
    load_yaml(base)  # fail early on a missing or broken base config
    axes = spec.get("axes") or {}
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"{path}: 'axes' must map axis names to lists (or, for 'variant', to named overrides)")
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
    return Sweep(path, base, sweep_out, cells, spec.get("resources") or {})


def cell_state(run_dir: Path) -> str:
    """done | running (another process holds the cell) | resume | restart | pending."""
    if run_dir.is_dir() and in_use(run_dir):
        return "running"
    if (run_dir / SUMMARY_FILE).is_file():
        return "done"
    if (run_dir / CHECKPOINT).is_file():
        return "resume"
    if run_dir.exists() and (not run_dir.is_dir() or has_run_content(run_dir)):
        return "restart"
    return "pending"   # absent, empty, or only rlsmooth's own leftovers


def cell_command(cell: Cell, base: Path, threads: int) -> list[str]:
    """``threads`` is written into a new cell's config (a resumed cell keeps the value it started with)."""
    if cell.state == "resume":
        return [sys.executable, "-m", "rlsmooth", "train", "--resume", str(cell.run_dir)]
    command = [sys.executable, "-m", "rlsmooth", "train", str(base), f"threads={threads}", *cell.overrides,
               "loop.progress=false",
               "--out", str(cell.run_dir)]
    return command + (["--replace"] if cell.state == "restart" else [])


def _end_with_parent() -> None:
    """In a cell's process (Linux): receive SIGTERM when the sweep that started it dies, however it
    dies (SIGKILL included), so no cell trains on unwatched; SIGTERM makes it checkpoint and stop."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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
        code = subprocess.call(command, stdout=f, stderr=subprocess.STDOUT, env=env, preexec_fn=_end_with_parent)
    lines = [l for l in Path(log).read_text().splitlines() if l.strip()]
    return code, (lines[-1] if lines else "")


def label_cell(run_dir: Path, cell_json: Path, axes: dict) -> None:
    """Write the cell's axes beside its run (a directory that is a file is left to fail in its run)."""
    if not run_dir.exists() or run_dir.is_dir():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cell_json, json.dumps(axes))


def run_sweep(sweep: Sweep, backend: str = "local", workers: int = 1, dry_run: bool = False,
              ray_address: str | None = None, population: int = 0) -> list[Cell]:
    for cell in sweep.cells:
        cell.state = cell_state(cell.run_dir)
        cell.log = sweep.out / "logs" / f"{cell.name}.log"
    todo = [c for c in sweep.cells if c.state not in ("done", "running")]
    if dry_run:
        for cell in sweep.cells:
            print(f"{cell.state:8s} {cell.name}  ->  {cell.run_dir}")
        print(f"{len(sweep.cells)} cells, {len(todo)} to run")
        return sweep.cells
    sweep.out.mkdir(parents=True, exist_ok=True)
    threads = (env_threads() or max(1, available_cores() // max(1, workers)) if backend == "local"
               else int(sweep.resources.get("num_cpus", 1)))
    groups = pack(todo, population) if population > 1 else [[c] for c in todo]
    jobs = [population_job(group, sweep, threads) if len(group) > 1 else
            (cell_command(group[0], sweep.base, threads), str(group[0].log), str(group[0].run_dir / CELL_FILE),
             str(group[0].run_dir), group[0].axes, threads) for group in groups]
    if backend == "ray":
        results = _run_ray(jobs, sweep.resources, ray_address)
    else:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:   # threads only wait on subprocesses
            results = list(pool.map(lambda job: run_cell_process(*job), jobs))
    for group, (code, last) in zip(groups, results):
        for cell in group:   # a population's members end one by one: each cell by its own run directory
            ok = code == 0 or (len(group) > 1 and (cell.run_dir / SUMMARY_FILE).is_file())
            cell.state = ("resumed" if cell.state == "resume" else "finished") if ok else f"failed ({code})"
            cell.result = last
    for cell in sweep.cells:
        cell.final_return = final_eval_return(cell.run_dir)
        if cell.state == "done":
            cell.state = "skipped (done)"
        elif cell.state == "running":
            cell.state = "running elsewhere"
        if not cell.state.startswith("failed") and summary_says_diverged(cell.run_dir):
            cell.state = "diverged"
    print_summary(sweep.cells)
    return sweep.cells


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
    name = group[0].name if len(group) == 1 else f"{group[0].name}+{len(group) - 1}"
    manifest = sweep.out / "populations" / f"{name}.json"
    members = []
    for cell in group:
        label_cell(cell.run_dir, cell.run_dir / CELL_FILE, cell.axes)
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
