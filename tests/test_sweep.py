"""Sweeps: cells in their own run directories, skipped, resumed, failing alone, on Ray and under a time budget."""

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from conftest import run_cli

SWEEP = """
base: {base}
out: {out}
set:
  loop.total_steps: 200
  loop.eval_every: 100
axes:
  variant:
    baseline: {{}}
    sn_fc: {{spectral.layers: [fc]}}
  seed: [0, 1]
"""


def table_states(stdout):
    """The final table's state per cell (the lines after its 'cell  state' header)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("cell ") and "state" in line)
    rows = {}
    for line in lines[start + 1:]:
        if line.startswith(("failed:", "time budget:")) or not line.strip():
            break
        name, rest = line.split(None, 1)
        rows[name] = rest.rsplit(None, 1)[0].strip()
    return rows


def make_sweep(tmp_path, chain_config):
    base = chain_config(steps=200)
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.format(base=base, out=tmp_path / "sweep_out"))
    return path


@pytest.mark.heavy
def test_local_sweep_runs_skips_and_resumes(tmp_path, chain_config):
    sweep = make_sweep(tmp_path, chain_config)
    dry = run_cli("sweep", sweep, "--dry-run", check=True).stdout
    assert "4 cells, 4 to run" in dry
    proc = run_cli("sweep", sweep, "--workers", "2", check=True)
    out = tmp_path / "sweep_out"
    cells = sorted(p.name for p in out.iterdir() if p.name != "logs")
    assert cells == ["variant=baseline__seed=0", "variant=baseline__seed=1",
                     "variant=sn_fc__seed=0", "variant=sn_fc__seed=1"]
    assert list(table_states(proc.stdout).values()) == ["finished"] * 4
    assert proc.stdout.count("] finished ") == 4 and proc.stdout.count("] started ") == 4   # progress lines
    # a second run skips everything; an interrupted cell (no summary.json) is resumed
    (out / "variant=sn_fc__seed=1" / "summary.json").unlink()
    proc = run_cli("sweep", sweep, check=True)
    assert list(table_states(proc.stdout).values()) == ["finished"] * 4
    assert proc.stdout.count("] started ") == 1   # only the interrupted cell ran, resumed
    # the report reads the sweep
    report = tmp_path / "report"
    run_cli("compare", out, "--out", report, "--reps", "200", check=True)
    text = (report / "report.md").read_text()
    assert "| chain | sn_fc | 2 |" in text and "Probability of improvement" in text
    for png in ("learning_curves.png", "sigma_curves.png"):
        assert (report / png).stat().st_size > 5000


@pytest.mark.heavy
def test_failing_cell_does_not_stop_the_others(tmp_path, chain_config):
    sweep = make_sweep(tmp_path, chain_config)
    spec = yaml.safe_load(sweep.read_text())
    spec["axes"]["variant"]["broken"] = {"optim.rho_layers": ["nope"], "optim.rho_scaling": "lr"}
    sweep.write_text(yaml.safe_dump(spec))
    # bad cells are caught before anything runs
    proc = run_cli("sweep", sweep)
    assert proc.returncode == 2 and "unknown layer 'nope'" in proc.stderr
    # a run that fails at run time is reported, the rest finish: block two cells' directories
    del spec["axes"]["variant"]["broken"]
    sweep.write_text(yaml.safe_dump(spec))
    out = tmp_path / "sweep_out"
    out.mkdir()
    for seed in (0, 1):
        (out / f"seed={seed}__variant=sn_fc").write_text("not a run directory")
    proc = run_cli("sweep", sweep, "--workers", "2")
    assert proc.returncode == 1
    states = list(table_states(proc.stdout).values())
    assert states.count("finished") == 2 and states.count("failed (2)") == 2
    assert "is a file, not a directory" in proc.stdout


@pytest.mark.slow
def test_ray_backend_runs_the_same_cells(tmp_path, chain_config):
    pytest.importorskip("ray")
    sweep = make_sweep(tmp_path, chain_config)
    proc = run_cli("sweep", sweep, "--backend", "ray", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "sweep_out"
    assert all((out / c / "summary.json").is_file() for c in ("variant=baseline__seed=0", "variant=sn_fc__seed=1"))


@pytest.mark.slow
@pytest.mark.parametrize("population", ["", "2"])
def test_gpu_ablation_script_runs_within_its_budget_on_cpu(tmp_path, chain_config, population):
    """bench/minatar_ablation_gpu.sh (one process per cell) and bench/population_gpu.sh (the cells as
    one population) with a tiny budget: cells run, stop on time, resume, and a report follows."""
    import os
    import subprocess
    import sys
    from conftest import ROOT
    base = chain_config(steps=200_000)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: {base}\naxes:\n  variant:\n    baseline: {{}}\n    sn_fc: {{spectral.layers: [fc]}}\n")
    env = dict(os.environ, PYTHON=sys.executable, SWEEP=str(sweep), OUT_DIR=str(tmp_path / "out"), BUDGET_S="35",
               WORKERS="1" if population else "2", POPULATION=population,
               EXTRA="loop.eval_every=2000 loop.checkpoint_every=2000 device=cpu")
    script = "population_gpu.sh" if population else "minatar_ablation_gpu.sh"   # the first packs populations
    proc = subprocess.run(["bash", str(ROOT / "bench" / script)], env=env, capture_output=True,
                          text=True, timeout=240)
    out = tmp_path / "out" / "sweep"   # named after the sweep file
    assert proc.returncode == 0, proc.stderr[-2000:]
    throughput = (out / "throughput.txt").read_text()
    assert ("populations of up to 2" if population else "steps/s over 2 processes") in throughput
    assert not throughput.startswith("agent steps this invocation: 0 ")
    for cell in ("variant=baseline", "variant=sn_fc"):
        assert (out / "runs" / cell / "checkpoints" / "latest.pt").is_file()   # stopped by the budget, resumable
    assert (out / "report" / "report.md").is_file()


def test_axis_values_equal_after_coercion_are_refused(tmp_path, chain_config):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"base: {chain_config()}\nout: {tmp_path / 'o'}\naxes:\n  seed: [1, 1.0]\n")
    proc = run_cli("sweep", sweep, "--dry-run")
    assert proc.returncode == 2 and "resolve to the same config" in proc.stderr and not (tmp_path / "o").exists()


def test_cells_are_labelled_before_they_run(tmp_path, chain_config):
    """A cell's sweep_cell.json exists while it trains, so an interrupted cell is labelled as a finished one."""
    sweep = make_sweep(tmp_path, chain_config)
    text = sweep.read_text().replace("  seed: [0, 1]", "  seed: [0]\n  algo.gamma: [0.9]")
    sweep.write_text(text)
    run_cli("sweep", sweep, check=True)
    out = tmp_path / "sweep_out"
    cell = out / "variant=sn_fc__seed=0__algo.gamma=0.9"
    (cell / "summary.json").unlink()   # as if interrupted
    report = tmp_path / "rep"
    run_cli("compare", out, "--out", report, "--reps", "100", check=True)
    variants = {row.split(",")[4] for row in (report / "scores.csv").read_text().splitlines()[1:]}
    assert variants == {"baseline algo.gamma=0.9", "sn_fc algo.gamma=0.9"}
    assert "against" in (report / "report.md").read_text()   # the baseline of that axis value is found


def test_a_busy_cell_is_reported_as_running_and_children_end_with_the_sweep(tmp_path, chain_config):
    import os
    import signal
    import subprocess
    import sys
    import time
    from conftest import ROOT
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"base: {chain_config(steps=200_000)}\nout: {tmp_path / 'o'}\naxes:\n  seed: [0]\n")
    parent = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "sweep", str(sweep)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "o" / "seed=0" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.stat().st_size) and time.time() < deadline:
        time.sleep(0.2)
    assert metrics.exists()
    # a second launch while the first trains: the cell is running, not failed
    again = run_cli("sweep", sweep)
    assert again.returncode == 0 and "running elsewhere" in again.stdout and "failed" not in again.stdout
    os.kill(parent.pid, signal.SIGKILL)   # the sweep alone dies ...
    parent.wait()
    lock = tmp_path / "o" / "seed=0"
    from rlsmooth.training.rundir import in_use
    deadline = time.time() + 60
    while in_use(lock) and time.time() < deadline:   # ... and its cell follows, checkpointing on the way out
        time.sleep(0.2)
    assert not in_use(lock)
    assert (lock / "checkpoints" / "latest.pt").is_file()
    assert run_cli("sweep", sweep, "--dry-run").stdout.startswith("resume ")   # the rerun picks it up


def test_cell_threads_respect_omp_num_threads(tmp_path, chain_config, monkeypatch):
    from rlsmooth.experiments.sweep import load_sweep, run_sweep
    sweep = make_sweep(tmp_path, chain_config)
    seen = []
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    import rlsmooth.experiments.sweep as sweep_module
    import rlsmooth.experiments.schedule as schedule_module

    class Done:
        def poll(self):
            return 0

    def spawn(job):
        seen.append(job.threads)
        job.process = Done()
    monkeypatch.setattr(schedule_module, "spawn", spawn)
    monkeypatch.setattr(sweep_module, "available_cores", lambda: 4)
    run_sweep(load_sweep(sweep), workers=2)
    assert seen and set(seen) == {1}
    monkeypatch.delenv("OMP_NUM_THREADS")
    seen.clear()
    run_sweep(load_sweep(sweep), workers=2)
    assert set(seen) == {2}


def test_a_schedule_warning_shared_by_every_cell_is_printed_once(tmp_path, chain_config):
    # epsilon decays over 300 steps after 100 of warm-up: longer than the cells' 200 steps
    proc = run_cli("sweep", make_sweep(tmp_path, chain_config), "--dry-run", check=True)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: longer than loop.total_steps=200: algo.epsilon_decay_steps=300 "
                        "(override them for a short run, e.g. loop.eval_every=... algo.epsilon_decay_steps=...)"]


def second_lines(stdout):
    return [line for line in stdout.splitlines() if "] started " in line]


@pytest.mark.heavy
def test_a_time_budget_leaves_nothing_half_done_and_a_second_call_continues(tmp_path, chain_config):
    base = chain_config(steps=3000)
    sweep = tmp_path / "sweep.yaml"
    out = tmp_path / "sweep_out"
    sweep.write_text(yaml.safe_dump({"base": str(base), "out": str(out), "order": ["seed", "variant"],
                                     "set": {"loop.eval_every": 1000, "loop.log_every": 100},
                                     "axes": {"variant": {"baseline": {}, "sn_fc": {"spectral.layers": ["fc"]}},
                                              "seed": [0, 1, 2]}}, sort_keys=False))
    first = run_cli("sweep", sweep, "--time-budget", "25s", timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "time budget:" in first.stdout
    started = [line for line in first.stdout.splitlines() if "] started " in line]
    assert started and started[0].split("started ")[1].startswith("variant=baseline__seed=0")
    order = [line.split("started ")[1].split(" ")[0] for line in second_lines(first.stdout)]
    assert order[:2] == ["variant=baseline__seed=0", "variant=sn_fc__seed=0"][:len(order)]   # seed outermost
    cells = {p.name: p for p in out.iterdir() if p.name.startswith("variant=")}
    finished = {n for n, p in cells.items() if (p / "summary.json").is_file()}
    # nothing half-done: a cell directory exists only for a finished cell
    assert all((p / "summary.json").is_file() for p in cells.values()), sorted(cells)
    assert len(finished) < 6 and set(table_states(first.stdout).values()) <= {"finished", "not started (budget)"}
    before = {n: (out / n / "metrics.jsonl").read_bytes() for n in finished}
    second = run_cli("sweep", sweep, "--time-budget", "20m", timeout=600, check=True)
    assert list(table_states(second.stdout).values()) == ["finished"] * 6
    assert second.stdout.count("] started ") == 6 - len(finished)
    assert all((out / n / "metrics.jsonl").read_bytes() == b for n, b in before.items())


def test_cells_finished_in_a_results_directory_are_skipped(tmp_path, chain_config):
    import shutil
    sweep = make_sweep(tmp_path, chain_config)
    out = tmp_path / "sweep_out"
    one = ("--set", "axes.variant=[sn_fc]", "axes.seed=[1]")
    run_cli("sweep", sweep, *one, check=True)
    results = tmp_path / "results"
    results.mkdir()
    shutil.move(str(out / "variant=sn_fc__seed=1"), str(results / "variant=sn_fc__seed=1"))
    status = run_cli("sweep", sweep, "--status", "--results", results, check=True).stdout.splitlines()
    rows = {line.split()[0]: line for line in status[1:]}
    moved = rows.pop("variant=sn_fc__seed=1")
    assert len(rows) == 3 and " finished " in moved and " 200/200 " in moved, status
    assert all(" pending " in line and " 0/200 " in line for line in rows.values()), status
    proc = run_cli("sweep", sweep, "--results", results, *one, check=True)
    assert table_states(proc.stdout)["variant=sn_fc__seed=1"] == "finished (results)"
    assert "] started " not in proc.stdout and not (out / "variant=sn_fc__seed=1").exists()
    bad = run_cli("sweep", sweep, "--results", tmp_path / "nope")
    assert bad.returncode == 2 and "--results" in bad.stderr
    assert run_cli("sweep", sweep, "--time-budget", "soon").returncode == 2


def test_set_narrows_an_axis_from_the_command_line(tmp_path, chain_config):
    from conftest import assert_one_line_error
    sweep = make_sweep(tmp_path, chain_config)
    dry = run_cli("sweep", sweep, "--dry-run", "--set", "axes.seed=[1]", "axes.variant=[sn_fc]", check=True).stdout
    assert "1 cells, 1 to run" in dry and "variant=sn_fc__seed=1" in dry
    assert_one_line_error(run_cli("sweep", sweep, "--dry-run", "--set", "axes.seed=[9]"), "axis 'seed' has no value 9")
    assert_one_line_error(run_cli("sweep", sweep, "--dry-run", "--set", "axes.lr=[1]"), "the sweep has no axis 'lr'")


def test_a_job_interrupted_from_outside_after_its_checkpoint_is_stopped_not_failed(tmp_path):
    """A cell's process ended by SIGTERM or Ctrl-C (exit 130) with its checkpoint written is resumable:
    the summary says so, and a cell that ended with 130 and no checkpoint, or with another status, failed."""
    from rlsmooth.experiments.schedule import Job
    from rlsmooth.experiments.sweep import INTERRUPTED, Cell, _finish_job
    from rlsmooth.training.rundir import CHECKPOINT
    states = {}
    for name, code, checkpointed in (("interrupted", INTERRUPTED, True), ("no_checkpoint", INTERRUPTED, False),
                                     ("crashed", 1, True)):
        run_dir = tmp_path / name
        (run_dir / CHECKPOINT).parent.mkdir(parents=True)
        if checkpointed:
            (run_dir / CHECKPOINT).write_bytes(b"checkpoint")
        log = tmp_path / f"{name}.log"
        log.write_text("interrupted at step 500: checkpoint written\n")
        cell = Cell(name, {"seed": 0}, [], run_dir, state="resume" if checkpointed else "pending", log=log)
        _finish_job(Job([cell], [], log, 1), code, lambda d: True, [])
        states[name] = (cell.state, cell.result)
    assert states["interrupted"] == ("stopped (resumable)", "interrupted at step 500: checkpoint written")
    assert states["no_checkpoint"][0] == f"failed ({INTERRUPTED})" and states["crashed"][0] == "failed (1)"


def test_the_early_check_judges_a_job_at_its_own_rate_not_at_other_processes_load(tmp_path, monkeypatch):
    """Early in its life, a job whose log says it will not finish by the deadline is stopped; the same
    job is kept when it was slow because other processes held its core (time ready but waiting)."""
    from rlsmooth.experiments import schedule
    from rlsmooth.experiments.schedule import Job, waiting_share
    from rlsmooth.experiments.sweep import Cell, _watch
    run_dir = tmp_path / "cell"
    run_dir.mkdir()
    # learning from step 100 at 1 agent step/s: 1,000 steps left take 1,000 s at this rate
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"step": 100, "time/sps": 1.0, "train/updates": 1}, {"step": 200, "time/sps": 1.0},
        {"step": 300, "time/sps": 1.0})))
    core = min(os.sched_getaffinity(0))
    busy = [sys.executable, "-c", "while True: pass"]

    def on_core():
        os.sched_setaffinity(0, {core})

    def watched(hogs: int) -> tuple[Job, float]:
        others = [subprocess.Popen(busy, preexec_fn=on_core) for _ in range(hogs)]
        job = Job([Cell("cell", {}, [], run_dir, total_steps=1300)], busy, tmp_path / "log", 1)
        try:
            job.process, job.started = subprocess.Popen(busy, preexec_fn=on_core), time.time()
            time.sleep(3.0)
            # 1,000 s at the logged rate against a deadline 400 s away: stopped unless more than 60% of
            # the job's runnable time went to waiting for its core
            _watch(job, time.time() + 400, {}, [])
            share = waiting_share(job.process.pid)
        finally:
            for p in [job.process, *others]:
                p.kill()
                p.wait()
        return job, share

    # crowded: four more processes on its core, and whatever else the machine runs, only add waiting
    crowded, crowded_share = watched(4)
    assert crowded.stopped == "" and crowded_share > 0.6, crowded_share
    # alone: a core to itself, which a shared test machine cannot promise, so its waiting share is set
    monkeypatch.setattr(schedule, "waiting_share", lambda pid: 0.0)
    alone, _ = watched(0)
    assert alone.stopped == "stopped: it would not finish by the deadline"
    assert waiting_share(2 ** 22 + 12345) == 0.0   # no such process: nothing known, nothing taken out


def test_the_scheduler_wakes_when_a_job_ends_not_at_its_next_poll(monkeypatch):
    """A job that ends is noticed within the short exit poll, so the next job starts at once; with
    nothing ending, the wait lasts the whole poll period (when rates and the deadline are read)."""
    from rlsmooth.experiments import schedule
    from rlsmooth.experiments.schedule import Job, wait_for_an_exit
    clock = [0.0]
    monkeypatch.setattr(schedule.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(schedule.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))

    class EndsAt:
        def __init__(self, at):
            self.at = at

        def poll(self):
            return 0 if clock[0] >= self.at else None

    jobs = [Job([], [], None, 1, process=EndsAt(100.0)), Job([], [], None, 1, process=EndsAt(0.35))]
    wait_for_an_exit(jobs, 5.0)
    assert 0.35 <= clock[0] < 0.35 + 2 * schedule.EXIT_POLL_SECONDS
    clock[0], jobs[1].process.at = 0.0, 100.0
    wait_for_an_exit(jobs, 5.0)
    assert clock[0] == pytest.approx(5.0)


def test_queued_cells_are_read_again_before_they_start(tmp_path, chain_config, capsys):
    """Another process (a second sweep on the same directory) may train a queued cell after this sweep
    read its state: a cell it finished or holds is not started again, and one it left with a
    checkpoint is resumed, not started over."""
    from rlsmooth.experiments.sweep import SUMMARY_FILE, load_sweep, run_local
    from rlsmooth.training.rundir import RunLock
    import shutil
    path = make_sweep(tmp_path, chain_config)
    run_cli("sweep", path, "--set", "axes.variant=[baseline]", "axes.seed=[0]", check=True)   # one cell
    sweep = load_sweep(path)
    (held,) = [c for c in sweep.cells if (c.run_dir / SUMMARY_FILE).is_file()]
    *finished, resumed = [c for c in sweep.cells if c is not held]
    for cell in (*finished, resumed):   # the other process's finished runs: copies of the one trained
        shutil.copytree(held.run_dir, cell.run_dir)
    (resumed.run_dir / SUMMARY_FILE).unlink()   # stopped after its last checkpoint, as if interrupted
    metrics = {c.name: (c.run_dir / "metrics.jsonl").read_bytes() for c in (held, *finished)}
    for cell in sweep.cells:   # the states this sweep read before the other process trained the cells
        cell.state, cell.log = "restart", tmp_path / f"{cell.name}.log"
    resumed.state = "pending"
    lock = RunLock(held.run_dir).acquire()
    try:
        run_local(sweep, list(sweep.cells), workers=1, population=1, threads=1, deadline=None)
    finally:
        lock.release()
    assert held.state == "running elsewhere"
    assert [c.state for c in finished] == ["finished, by another process"] * 2
    assert {c.name: (c.run_dir / "metrics.jsonl").read_bytes() for c in (held, *finished)} == metrics
    assert resumed.state == "finished" and (resumed.run_dir / SUMMARY_FILE).is_file()
    assert "--resume" in resumed.log.read_text().splitlines()[0]
    out = capsys.readouterr().out
    assert out.count("skipped ") == 3 and out.count("] started ") == 1


def _logged_run(run_dir, windows, sps, members=None, finished=False):
    """A run directory that logged one window before learning (fast, never counted), then ``windows``
    learning windows of 100 agent steps at ``sps``."""
    run_dir.mkdir(parents=True)
    records = [{"step": 100, "time/sps": 5000.0, "train/updates": 1}]
    records += [{"step": 100 * (i + 2), "time/sps": sps} for i in range(windows)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if members:
        (run_dir / "sweep_cell.json").write_text(json.dumps({"seed": 0, "_members": members}))
    if finished:
        (run_dir / "summary.json").write_text("{}")
    return run_dir


def test_a_running_jobs_first_windows_do_not_plan_the_other_jobs(tmp_path):
    """A run's first learning windows run fast, so a running job's rate plans new jobs only once it
    spans a few windows, and outweighs the rates measured on disk only once it spans the full average."""
    from rlsmooth.experiments import schedule
    from rlsmooth.experiments.schedule import Job, progress
    from rlsmooth.experiments.sweep import Cell, _plan_job, planning_rates

    def population_of_two(windows, sps):
        run_dir = _logged_run(tmp_path / f"running_{windows}_{sps:g}", windows, sps)
        return Job([Cell(f"m{i}", {}, [], run_dir, total_steps=10_000) for i in range(2)], [], tmp_path / "log", 1)

    # the rate is the agent steps over the seconds of the learning windows only
    run = progress(_logged_run(tmp_path / "mixed", 0, 1.0))
    assert run == (100, None, 0)
    two = tmp_path / "two"
    _logged_run(two, 2, 100.0)
    with (two / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 500, "time/sps": 50.0}) + "\n")
    assert progress(two) == (500, pytest.approx((100 + 100 + 200) / (100 / 100 + 100 / 100 + 200 / 50)), 3)

    one_window, few, many = population_of_two(1, 340.0), population_of_two(schedule.MIN_RATE_WINDOWS, 300.0), \
        population_of_two(schedule.RATE_WINDOWS, 200.0)
    assert planning_rates({}, [one_window]) == {}                        # nothing to plan with yet
    assert planning_rates({}, [few]) == {2: 300.0}                       # enough to plan with
    assert planning_rates({2: 150.0}, [one_window]) == {2: 150.0}        # the runs on disk stand ...
    assert planning_rates({2: 150.0}, [few]) == {2: 150.0}
    assert planning_rates({2: 150.0}, [many]) == {2: 200.0}              # ... until this machine says more
    assert planning_rates({1: 300.0}, [few]) == {1: 300.0, 2: 300.0}

    # on disk: finished runs count whatever their length; an unfinished one from a few windows on
    disk = tmp_path / "disk"
    _logged_run(disk / "short_finished", 1, 120.0, members=3, finished=True)
    _logged_run(disk / "stopped_early", 1, 900.0, members=3)
    _logged_run(disk / "stopped_later", schedule.MIN_RATE_WINDOWS, 140.0, members=3)
    _logged_run(disk / "not_a_cell", schedule.RATE_WINDOWS, 900.0)
    assert schedule.measured_rates([disk], "sweep_cell.json") == {3: 140.0}   # the upper median of 120 and 140

    # past the deadline nothing starts, even with no rate measured
    queue = [Cell("c", {}, [], tmp_path / "c", total_steps=100)]
    assert _plan_job(queue, 1, {}, time.time() - 1) == ([], 0.0)
    assert _plan_job(queue, 1, {}, time.time() + 60)[0] == queue
