#!/usr/bin/env python
"""rlsmooth command line: train, eval, bench (see README and shared/DESIGN.md §3)."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

AGENT_NAMES = ("dqn", "c51", "ppo", "a2c")


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def agent_module(name: str):
    import importlib
    return importlib.import_module(f"agents.{name}")


def algo_classes() -> dict[str, type]:
    return {name: agent_module(name).CONFIG for name in AGENT_NAMES}


def load_train_config(data: dict):
    """Validate a config fully: keys, types, values, game id and layer selectors."""
    from rlsmooth.config import parse_train_config
    from rlsmooth.envs import check_game
    cfg = parse_train_config(data, algo_classes())
    check_game(cfg.env)
    check_layers(cfg)
    return cfg


def check_layers(cfg) -> None:
    """Resolve every layer selector against the agent's network (built on the CPU, then dropped)."""
    from rlsmooth.envs import make_vec_env
    from rlsmooth.networks import select_layers
    from rlsmooth.seeding import EVAL_CLI, SeedStreams
    env = make_vec_env(cfg.env, SeedStreams(cfg.seed).env_seeds(EVAL_CLI, 1), training=False)
    net = agent_module(cfg.agent).build(cfg, env.obs_shape, env.num_actions)
    env.close()
    select_layers(net, cfg.spectral.layers, "spectral.layers")
    select_layers(net, cfg.spectral.track, "spectral.track")
    if cfg.optim.rho_scaling != "none":
        select_layers(net, cfg.optim.rho_layers, "optim.rho_layers")


def cmd_train(args) -> int:
    from rlsmooth.config import ConfigError, apply_overrides, load_yaml
    from rlsmooth.rundir import CHECKPOINT, default_run_dir, prepare_new, read_config, resolve_device

    if args.resume:
        if args.config or args.overrides or args.out:
            raise_config("--resume takes only the run directory (its config.yaml is reused)")
        run_dir = Path(args.resume)
        cfg = load_train_config(read_config(run_dir))
        if not (run_dir / CHECKPOINT).is_file():
            raise_config(f"{run_dir} has no checkpoint to resume from ({CHECKPOINT})")
    else:
        if not args.config:
            raise_config("train needs a CONFIG.yaml (or --resume RUN_DIR)")
        data = apply_overrides(load_yaml(args.config), args.overrides)
        cfg = load_train_config(data)
        resolve_device(cfg.device)   # before --replace deletes anything
        run_dir = Path(args.out) if args.out else default_run_dir(cfg.agent, cfg.env.suite, cfg.env.game, cfg.seed)
        prepare_new(run_dir, args.replace)
    try:
        summary = agent_module(cfg.agent).train(cfg, run_dir, resume=bool(args.resume))
    except KeyboardInterrupt:
        return 130
    except ConfigError:
        if not args.resume and not (run_dir / "config.yaml").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # created by this call, nothing written yet
        raise
    if "eval/episode_return" in summary:
        print(f"final evaluation: return {summary['eval/episode_return']:.2f} ± {summary['eval/episode_return_std']:.2f} "
              f"over {int(summary['eval/episodes'])} episodes at step {summary['step']}")
    elif "eval/episodes" in summary:
        print(f"final evaluation: no episode finished within loop.eval_steps={cfg.loop.eval_steps} agent steps")
    print(f"logs: {run_dir / 'metrics.jsonl'}  checkpoint: {run_dir / CHECKPOINT}")
    write_summary(run_dir, summary)
    return 0


def write_summary(run_dir: Path, summary: dict) -> None:
    """Marks a run as finished (sweeps skip it); written atomically."""
    import json
    tmp = run_dir / "summary.json.tmp"
    tmp.write_text(json.dumps({k: float(v) for k, v in summary.items()}, indent=1))
    tmp.replace(run_dir / "summary.json")


def cmd_eval(args) -> int:
    from rlsmooth.evaluate_run import evaluate_run
    result = evaluate_run(Path(args.run_dir), args.episodes, args.device, args.greedy)
    print(result)
    return 0


def cmd_sweep(args) -> int:
    from rlsmooth.sweep import load_sweep, run_sweep
    if args.workers < 1:
        raise_config("--workers must be >= 1")
    cells = run_sweep(load_sweep(args.sweep, args.out), args.backend, args.workers, args.dry_run, args.address)
    return 1 if any(c.state.startswith("failed") for c in cells) else 0


def cmd_compare(args) -> int:
    from rlsmooth.report import compare
    compare([Path(p) for p in args.dirs], Path(args.out), baseline=args.baseline, reps=args.reps)
    return 0


def cmd_bench(args) -> int:
    from rlsmooth.bench import run_bench
    for name in ("num_envs", "steps", "repeats"):
        if getattr(args, name) < 1:
            raise_config(f"--{name.replace('_', '-')} must be >= 1")
    run_bench(args)
    return 0


def raise_config(message: str):
    from rlsmooth.config import ConfigError
    raise ConfigError(message)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="run.py", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    p = sub.add_parser("train", help="train an agent from a YAML config")
    p.add_argument("config", nargs="?", help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.add_argument("--out", help="run directory (default: runs/<agent>-<suite>-<game>-s<seed>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--replace", action="store_true", help="delete an existing run directory at --out first")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a saved agent")
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--greedy", action="store_true", help="greedy policy (epsilon 0 / argmax of pi)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sweep", help="run games x seeds x variants, one run directory per cell")
    p.add_argument("sweep", help="sweep YAML (see configs/sweeps/)")
    p.add_argument("--backend", default="local", choices=["local", "ray"])
    p.add_argument("--workers", type=int, default=1, help="local backend: runs at a time")
    p.add_argument("--address", default=None, help="ray backend: cluster address (default: start a local Ray)")
    p.add_argument("--out", default=None, help="sweep directory (default: the sweep file's 'out')")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their state, run nothing")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("compare", help="tables, aggregates and plots from run or sweep directories")
    p.add_argument("dirs", nargs="+", help="run directories or sweep directories (searched recursively)")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--baseline", default="baseline", help="variant that others are compared against")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for confidence intervals")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("bench", help="agent steps/s of the loops and their parts")
    p.add_argument("--agent", default="all", choices=["all", *AGENT_NAMES])
    p.add_argument("--suite", default="atari", choices=["atari", "minatar", "test"])
    p.add_argument("--game", default=None)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=2000, help="agent steps timed per measurement")
    p.add_argument("--spectral", default="auto",
                   help="also time the loop with SN on these layers (comma list; auto = the penultimate layer; none)")
    p.add_argument("--repeats", type=int, default=2, help="alternating repetitions of each loop measurement")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=cmd_bench)

    args = parser.parse_args(argv)
    from rlsmooth.config import ConfigError
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
