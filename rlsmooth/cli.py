"""The rlsmooth command line: train, eval, sweep, compare, bench.

Every problem the user can fix (bad config, bad file, unusable run directory, full disk) ends with
one readable line on stderr and exit status 2, and leaves what is already on disk as it was.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import threading
from pathlib import Path

from rlsmooth.errors import ConfigError, UserError, one_line, os_error_line


EXIT_DIVERGED = 3
"""``train``'s exit status for a run that stopped because it diverged (2 is a refused input)."""


class DefaultsFormatter(argparse.HelpFormatter):
    """Help lines end with the option's default, where it has one worth saying."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "default" in text:
            return text
        if isinstance(action, argparse._StoreTrueAction):
            return text + " (default: off)"
        if action.default in (None, []):
            return text + " (default: none)"
        return text + " (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2
        print(f"error: {one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def print_result(summary: dict, run_dir: Path, eval_steps: int) -> None:
    if "eval/episode_return" in summary:
        print(f"final evaluation: return {summary['eval/episode_return']:.2f} ± {summary['eval/episode_return_std']:.2f} "
              f"over {int(summary['eval/episodes'])} episodes at step {int(summary['step'])}")
    elif "eval/episodes" in summary:
        print(f"final evaluation: no episode finished within loop.eval_steps={eval_steps} agent steps")


def resume_run(args):
    """(config, run dir, lock) of a run to resume, or None when it has nothing left to do.

    ``--total-steps N`` and ``key=value`` overrides of the keys a resume may change (the budget,
    periods, progress, threads, device, ``wandb.*``) apply to the resolved config in memory; the
    run's config.yaml records them (``meta.resumed``) only once every check has passed."""
    from rlsmooth.agents.preflight import load_train_config
    from rlsmooth.config.yaml_files import apply_overrides
    from rlsmooth.training.checkpoint import RESUMABLE_KEYS, resumable
    from rlsmooth.training.rundir import CHECKPOINT, finished_reason, lock_existing, read_config, read_summary
    if args.out:
        raise ConfigError("--resume continues a run in its own directory; --out does not apply")
    overrides = [o for o in (args.config, *args.overrides) if o]
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item:
            raise ConfigError(f"--resume takes RUN_DIR, --total-steps and key=value overrides; '{item}' is not "
                              f"key=value")
        if not resumable(key):
            raise ConfigError(f"--resume cannot change {key}: a resumed run must be the same run (it may change "
                              f"{', '.join(k.rstrip('.') + ('.*' if k.endswith('.') else '') for k in RESUMABLE_KEYS)})")
    run_dir = Path(args.resume)
    data = apply_overrides(read_config(run_dir), overrides)
    if args.total_steps is not None:
        data.setdefault("loop", {})["total_steps"] = args.total_steps
    cfg = load_train_config(data)   # checked in memory: nothing is written before every check passes
    lock = lock_existing(run_dir)
    try:
        done = read_summary(run_dir)
        if done is not None and args.total_steps is not None and args.total_steps < done.get("step", 0):
            raise ConfigError(f"--total-steps {args.total_steps:,} is below the {int(done['step']):,} steps "
                              f"{run_dir} has already run")
        reason = finished_reason(done, cfg) if done is not None else None
        if reason:
            lock.release()
            print(f"{run_dir} {reason}")
            print_result(done, run_dir, cfg.loop.eval_steps)
            return None
        if not (run_dir / CHECKPOINT).is_file():
            raise ConfigError(f"{run_dir} has no checkpoint to resume from ({CHECKPOINT})")
    except BaseException:
        lock.release()
        raise
    return cfg, run_dir, lock


def run_population(manifest: Path) -> int:
    """Train a population's members (``population.json``); one line per member at the end."""
    from rlsmooth.population.manifest import run_manifest
    try:
        members, notes = run_manifest(manifest)
    except KeyboardInterrupt:
        return 130
    for note in notes:
        print(note)
    for m in members:
        if m.error:
            print(f"failed: {m.run_dir}: {m.error}")
        else:
            print(f"{m.run_dir}: ", end="")
            print_result(m.summary, m.run_dir, 0)
    return 1 if any(m.error for m in members) or any(n.startswith("failed") for n in notes) else 0


def start_population(args) -> int:
    """``train CONFIG --population K``: K seeds of one config trained together, one run directory each."""
    import time
    from rlsmooth.agents.preflight import load_train_config
    from rlsmooth.config.yaml_files import apply_overrides, load_yaml
    from rlsmooth.population.manifest import MANIFEST, write_manifest
    if args.population < 1:
        raise ConfigError("--population must be >= 1")
    cfg = load_train_config(apply_overrides(load_yaml(args.config), args.overrides))
    out = Path(args.out) if args.out else Path("runs") / (f"{cfg.agent}-{cfg.env.suite}-{cfg.env.game}-pop"
                                                        f"{args.population}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / MANIFEST).exists() or (out.exists() and any(out.iterdir()) and not args.replace):
        raise ConfigError(f"{out} already exists; continue it with: rlsmooth train --resume {out}")
    members = [{"run_dir": f"seed={cfg.seed + i}", "base": str(Path(args.config).resolve()),
                "overrides": [*args.overrides, f"seed={cfg.seed + i}"], "replace": args.replace}
               for i in range(args.population)]
    write_manifest(out / MANIFEST, members)
    return run_population(out / MANIFEST)


def cmd_population(args) -> int:
    return run_population(Path(args.manifest))


def cmd_train(args) -> int:
    from rlsmooth.population.manifest import MANIFEST
    if args.resume and (Path(args.resume) / MANIFEST).is_file():
        if args.total_steps is not None:
            raise ConfigError("--total-steps: continue a population's members one by one (rlsmooth train --resume MEMBER)")
        return run_population(Path(args.resume) / MANIFEST)
    if args.population is not None:
        if args.resume:
            raise ConfigError("--population starts a population; --resume DIR continues one")
        return start_population(args)
    from rlsmooth.agents import AGENTS
    from rlsmooth.agents.preflight import load_train_config
    from rlsmooth.config.yaml_files import apply_overrides, load_yaml
    from rlsmooth.training.rundir import CHECKPOINT, REPLACED, default_run_dir, prepare_new, settle_replace
    from rlsmooth.training.runtime import resolve_device

    existed = True
    if args.resume:
        resumed = resume_run(args)
        if resumed is None:
            return 0
        cfg, run_dir, lock = resumed
    else:
        if not args.config:
            raise ConfigError("train needs a CONFIG.yaml (or --resume RUN_DIR)")
        if args.total_steps is not None:
            raise ConfigError("--total-steps goes with --resume; for a new run, override loop.total_steps=N")
        cfg = load_train_config(apply_overrides(load_yaml(args.config), args.overrides))
        resolve_device(cfg.device)   # before --replace deletes anything
        run_dir = Path(args.out) if args.out else default_run_dir(cfg.agent, cfg.env.suite, cfg.env.game, cfg.seed)
        existed = run_dir.exists()
        lock = prepare_new(run_dir, args.replace)
        if lock.kept:
            print(f"--replace: kept what rlsmooth did not write in {run_dir}: {', '.join(lock.kept)}")
    started = False
    try:
        summary = AGENTS[cfg.agent].train(cfg, run_dir, resume=bool(args.resume))
        started = True
    except KeyboardInterrupt:
        started = True
        return 130
    except (UserError, OSError):
        # refused or failed before its first checkpoint: nothing of this attempt is kept, and a
        # replaced run comes back as it was
        if not args.resume and not (run_dir / CHECKPOINT).exists():
            if not existed:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                (run_dir / REPLACED).mkdir(exist_ok=True)
                settle_replace(run_dir, keep_new=False)
        else:
            started = True
        raise
    finally:
        if started and not args.resume:
            settle_replace(run_dir, keep_new=True)
        lock.release()
    checkpoint = run_dir / CHECKPOINT
    print(f"logs: {run_dir / 'metrics.jsonl'}" + (f"  checkpoint: {checkpoint}" if checkpoint.is_file() else ""))
    if summary.get("diverged"):
        print(f"diverged after step {int(summary['diverged_after_step']):,}: summary.json records it "
              f"with the evaluations so far (exit status {EXIT_DIVERGED})")
    print_result(summary, run_dir, cfg.loop.eval_steps)
    return EXIT_DIVERGED if summary.get("diverged") else 0


def cmd_eval(args) -> int:
    from rlsmooth.experiments.evaluate_run import evaluate_run
    print(evaluate_run(Path(args.run_dir), args.episodes, args.device, args.greedy,
                       Path(args.video) if args.video else None, args.epsilon, args.env))
    return 0


def cmd_sweep(args) -> int:
    from rlsmooth.experiments.sweep import load_sweep, run_sweep
    if args.workers < 1:
        raise ConfigError("--workers must be >= 1")
    if args.population < 0:
        raise ConfigError("--population must be >= 0")
    from rlsmooth.experiments.schedule import parse_deadline, parse_duration
    import time
    if args.time_budget and args.deadline:
        raise ConfigError("give --time-budget or --deadline, not both")
    deadline = (time.time() + parse_duration(args.time_budget) if args.time_budget else
                parse_deadline(args.deadline) if args.deadline else None)
    results = [Path(r) for r in args.results]
    for r in results:
        if not r.is_dir():
            raise ConfigError(f"--results {r}: not a directory")
    if args.status:
        from rlsmooth.experiments.sweep import print_status
        print_status(load_sweep(args.sweep, args.out, args.set), results)
        return 0
    cells = run_sweep(load_sweep(args.sweep, args.out, args.set), args.backend, args.workers, args.dry_run,
                      args.address, population=args.population, deadline=deadline, results=results)
    return 1 if any(c.state.startswith("failed") for c in cells) else 0


def cmd_config(args) -> int:
    """Print a resolved config: every key with its value, default and docstring (units)."""
    from rlsmooth.agents.preflight import load_train_config
    from rlsmooth.config.coerce import describe_config
    from rlsmooth.config.yaml_files import apply_overrides, load_yaml
    cfg = load_train_config(apply_overrides(load_yaml(args.config), args.overrides))
    print(f"# {args.config} resolved ({cfg.agent}); '(default: X)' where the value is not the dataclass default")
    print("\n".join(describe_config(cfg)))
    return 0


def cmd_compare(args) -> int:
    from rlsmooth.experiments.report import compare
    if args.reps < 1:
        raise ConfigError("--reps must be >= 1")
    if args.last_n < 1:
        raise ConfigError("--last-n must be >= 1")
    compare([Path(p) for p in args.dirs], Path(args.out), baseline=args.baseline, reps=args.reps, last_n=args.last_n,
            criteria=Path(args.criteria) if args.criteria else None)
    return 0


def cmd_bench(args) -> int:
    if args.peak:
        import torch
        from rlsmooth.experiments.bench_peak import run_peak_bench
        try:
            sizes = [int(k) for k in args.peak.split(",")]
        except ValueError:
            raise ConfigError(f"--peak {args.peak}: expected population sizes like 4,9,16") from None
        if args.threads < 1 or args.gemm_size < 64:
            raise ConfigError("--threads must be >= 1 and --gemm-size >= 64")
        torch.set_num_threads(args.threads)
        run_peak_bench(sizes, args.nets.split(","), args.precision.split(","), args.repeats, args.gemm_size, 0.5,
                       args.json)
        return 0
    if args.population:
        from rlsmooth.experiments.bench_population import NETS, run_population_bench
        try:
            sizes = [int(k) for k in args.population.split(",")]
        except ValueError:
            raise ConfigError(f"--population {args.population}: expected sizes like 8,16") from None
        nets = args.nets.split(",")
        if min(sizes) < 1 or args.steps < 100 or args.repeats < 1 or not set(nets) <= set(NETS):
            raise ConfigError(f"--population sizes >= 1, --steps >= 100, --repeats >= 1, --nets from {', '.join(NETS)}")
        run_population_bench(sizes, args.steps, args.repeats, args.device if args.device != "auto" else "cpu",
                             args.game or "breakout", nets, args.json)
        return 0
    from rlsmooth.agents import AGENTS
    from rlsmooth.experiments.bench import run_bench
    if args.agent not in ("all", *AGENTS):
        raise ConfigError(f"--agent {args.agent}: unknown agent (valid: all, {', '.join(AGENTS)})")
    for name in ("num_envs", "steps", "repeats", "threads"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    import torch
    torch.set_num_threads(args.threads)
    run_bench(args)
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", formatter_class=DefaultsFormatter, help="train an agent from a YAML config")
    p.add_argument("config", nargs="?", help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.add_argument("--out", help="run directory (runs/<agent>-<suite>-<game>-s<seed>-<time> if not given)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--replace", action="store_true", help="delete an existing rlsmooth run directory at --out first")
    p.add_argument("--population", type=int, default=None, metavar="K",
                   help="train K seeds (seed .. seed+K-1) of the config in one process, one run directory each "
                        "(value-based agents)")
    p.add_argument("--total-steps", type=int, default=None, metavar="N",
                   help="with --resume: continue the run to N agent steps (extends a finished run)")
    p.set_defaults(func=cmd_train)


def _add_population(sub) -> None:
    p = sub.add_parser("population", formatter_class=DefaultsFormatter,
                       help="train the members a population manifest names, in one process")
    p.add_argument("manifest", help="population.json (written by train --population and sweep --population)")
    p.set_defaults(func=cmd_population)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", formatter_class=DefaultsFormatter, help="evaluate a saved agent")
    p.add_argument("run_dir", help="a run directory (its config.yaml and checkpoints/latest.pt)")
    p.add_argument("--episodes", type=int, default=10,
                   help="whole episodes to play, shared over the evaluation envs as equal quotas")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the policy runs (auto: CUDA when PyTorch finds it)")
    p.add_argument("--greedy", action="store_true", help="greedy policy (epsilon 0 / argmax of pi)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="exploration rate of a value agent's policy (default: the run's loop.eval_epsilon)")
    p.add_argument("--env", default="evaluation", choices=["evaluation", "training"],
                   help="which kind of env to play on: as evaluation phases build it, or as the training loop does "
                        "(reward clipping and life-loss terminals; returns are raw scores either way)")
    p.add_argument("--video", metavar="DIR", help="play the episodes one env at a time and write each as "
                   "DIR/episode_<i>.mp4 (Atari in full colour, MinAtar's grid; needs the video extra)")
    p.set_defaults(func=cmd_eval)


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", formatter_class=DefaultsFormatter, help="run games x seeds x variants, one run directory per cell")
    p.add_argument("sweep", help="sweep YAML (see configs/sweeps/)")
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local: subprocesses on this machine; ray: Ray tasks on a cluster or a local Ray")
    p.add_argument("--workers", type=int, default=1, help="local backend: runs at a time")
    p.add_argument("--address", default=None, help="ray backend: cluster address (default: start a local Ray)")
    p.add_argument("--out", default=None, help="sweep directory (default: the sweep file's 'out')")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their state, run nothing")
    p.add_argument("--status", action="store_true",
                   help="the table of a running or finished sweep from its directory: state, step, last evaluation, "
                        "ETA; runs nothing")
    p.add_argument("--population", type=int, default=0, metavar="K",
                   help="train cells that can share a process (seeds and variants of one value agent and network) "
                        "in populations of up to K (0: one process per cell)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides for every cell, after the sweep file's own 'set'")
    p.add_argument("--time-budget", default=None, metavar="DURATION",
                   help="start only what the measured rate says finishes within DURATION (2h30m, 90m, 45s); "
                        "stop cleanly, printing what finished and what remains (default: no limit)")
    p.add_argument("--deadline", default=None, metavar="TIME",
                   help="as --time-budget, to a wall-clock time: HH:MM or an ISO date-time (default: none)")
    p.add_argument("--results", action="append", default=[], metavar="DIR",
                   help="a directory of finished cells (e.g. a study's committed runs): cells finished there "
                        "are skipped; repeatable (default: none)")
    p.set_defaults(func=cmd_sweep)


def _add_config(sub) -> None:
    p = sub.add_parser("config", formatter_class=DefaultsFormatter,
                       help="print a resolved config: every key, its value, default, unit and meaning")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, as train takes them")
    p.set_defaults(func=cmd_config)


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", formatter_class=DefaultsFormatter, help="tables, aggregates and plots from run or sweep directories")
    p.add_argument("dirs", nargs="+", help="run directories or sweep directories (searched recursively)")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--baseline", default="baseline", help="variant that others are compared against")
    p.add_argument("--criteria", default=None, metavar="FILE",
                   help="pre-registered criteria (YAML): a holds / fails / undecided line for each in report.md "
                        "(default: none)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for confidence intervals")
    p.add_argument("--last-n", type=int, default=3, help="evaluations averaged for the last-N score")
    p.set_defaults(func=cmd_compare)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", formatter_class=DefaultsFormatter, help="agent steps/s of the loops and their parts")
    p.add_argument("--agent", default="all", help="an agent of the agent table, or all")
    p.add_argument("--suite", default="atari", choices=["atari", "minatar", "test"], help="the env suite measured")
    p.add_argument("--game", default=None, help="the game (default: breakout on atari and minatar, chain on test)")
    p.add_argument("--num-envs", type=int, default=8, help="training envs stepped together")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the networks run (auto: CUDA when PyTorch finds it)")
    p.add_argument("--steps", type=int, default=2000, help="agent steps timed per measurement")
    p.add_argument("--spectral", default="auto",
                   help="also time the loop with SN on these layers (comma list; auto = the penultimate layer; none)")
    p.add_argument("--repeats", type=int, default=2, help="alternating repetitions of each loop measurement")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for every measurement (one keeps figures comparable on a busy machine)")
    p.add_argument("--compile", action="store_true",
                   help="also time the update compiled against eager (value agents; compiling takes a while)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--population", default=None, metavar="K[,K...]",
                   help="instead: aggregate agent steps/s of K MinAtar DQN runs as one population against the same "
                        "runs as a sweep runs them (one process per core); --steps is then per member")
    p.add_argument("--precision", default="fp32", metavar="P[,P...]",
                   help="loop.precision values to measure side by side (fp32,bf16): every loop and, for value "
                        "agents, the update alone, interleaved")
    p.add_argument("--peak", default=None, metavar="K[,K...]",
                   help="instead: the FLOPs of one stacked MinAtar DQN update of K members and the rate it reaches "
                        "as a fraction of this machine's measured GEMM peak, per torso (--nets) and precision")
    p.add_argument("--gemm-size", type=int, default=1024, help="with --peak: the square matrix product that measures "
                   "the peak")
    p.add_argument("--nets", default="default,c32_h256",
                   help="with --population or --peak: MinAtar torsos to measure (default, c32_h256 = the paper's largest)")
    p.set_defaults(func=cmd_bench)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="rlsmooth", description=__doc__.splitlines()[0])
    from importlib import metadata
    try:
        version = metadata.version("rlsmooth")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    parser.add_argument("--version", action="version", version=f"rlsmooth {version}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    _add_train(sub)
    _add_population(sub)
    _add_eval(sub)
    _add_sweep(sub)
    _add_compare(sub)
    _add_config(sub)
    _add_bench(sub)
    return parser


def _quiet_thread_os_errors(hook_args) -> None:
    """An OS error in a helper thread (TensorBoard's event writer when the run directory is gone or
    full) is raised again in the main thread, which prints it as one line: no thread traceback."""
    if not issubclass(hook_args.exc_type, OSError):
        threading.__excepthook__(hook_args)


def main(argv: list[str] | None = None) -> int:
    threading.excepthook = _quiet_thread_os_errors
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        message = one_line(exc)
    except OSError as exc:   # the run directory or an input: not a directory, read-only, full, gone
        message = one_line(os_error_line(exc))
    except KeyboardInterrupt:
        return 130
    print(f"error: {message}", file=sys.stderr)
    return 2
