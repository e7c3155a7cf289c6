"""The whole training loop of one MinAtar DQN population at two checkouts, side by side.

    python bench/population_loop_ab.py --old /path/to/checkout-A --new /path/to/checkout-B \
        [--members 9] [--net c32_h256] [--steps 6000] [--repeats 3] [--set KEY=VALUE ...] [--json FILE]

Each arm is one ``rlsmooth train <preset> --population K`` process of that checkout (``PYTHONPATH``
points at it), one torch thread.  Two rates are reported per arm: the whole process, timed from
launch to exit (start-up included, which lowers the ratio a little), and the loop itself, from the
``time/sps`` the members log for the windows after agent step 2,000.  The arms alternate over the
repeats, so both see the same machine load; medians are reported.  The run learns from agent step
1,000 and its epsilon reaches its floor at 2,000: the late-training mix of steps, a greedy acting
pass every step and an update every four.  ``--set`` adds overrides for every member, e.g.
``spectral.track=[fc]`` (the 1M study's members log sigma(fc)) or ``spectral.layers=[fc]`` (SN members).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESETS = {"default": "configs/minatar_dqn.yaml", "c32_h256": "configs/ablations/minatar_dqn_net_c32_h256.yaml"}


def command(checkout: Path, net: str, members: int, steps: int, game: str, out: Path, extra: list[str]) -> list[str]:
    overrides = [f"env.game={game}", f"loop.total_steps={steps}", "algo.learning_starts=1000",
                 "algo.epsilon_decay_steps=1000", "loop.eval_every=0", "loop.eval_steps=100",
                 "loop.log_every=500", "loop.checkpoint_every=0", "loop.save_replay=false",
                 "loop.progress=false", "threads=1", "device=cpu", *extra]
    return [sys.executable, "-m", "rlsmooth", "train", str(checkout / PRESETS[net]), *overrides,
            "--population", str(members), "--out", str(out)]


def loop_rate(out: Path, members: int) -> float:
    """Agent steps/s of the whole population in its log windows after step 2,000 (one process: the
    members share their windows' times, so member seed 0's metrics say it)."""
    steps = seconds = 0.0
    last = 0
    for line in (next(out.glob("seed=*")) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "time/sps" in record:
            if last >= 2000:
                steps += record["step"] - last
                seconds += (record["step"] - last) / record["time/sps"]
            last = record["step"]
    return members * steps / seconds


def timed(checkout: Path, cmd: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd[:4])} ... failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", type=Path, required=True)
    p.add_argument("--new", type=Path, required=True)
    p.add_argument("--members", type=int, default=9)
    p.add_argument("--net", choices=sorted(PRESETS), default="c32_h256")
    p.add_argument("--steps", type=int, default=6000, help="agent steps per member")
    p.add_argument("--game", default="asterix")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every member")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    arms = {"old": args.old.resolve(), "new": args.new.resolve()}
    for name, path in arms.items():
        if not (path / "rlsmooth" / "__init__.py").is_file():
            sys.exit(f"--{name} {path}: not an rlsmooth checkout")
    seconds: dict[str, list[float]] = {a: [] for a in arms}
    in_loop: dict[str, list[float]] = {a: [] for a in arms}
    for r in range(args.repeats):
        for arm, checkout in arms.items():
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "pop"
                seconds[arm].append(timed(checkout, command(checkout, args.net, args.members, args.steps, args.game, out, args.set)))
                in_loop[arm].append(loop_rate(out, args.members))
            print(f"round {r + 1}: {arm} {seconds[arm][-1]:.1f} s, loop {in_loop[arm][-1]:.1f} agent steps/s", flush=True)
    rate = {a: args.members * args.steps / statistics.median(s) for a, s in seconds.items()}
    loop = {a: statistics.median(v) for a, v in in_loop.items()}
    report = {"members": args.members, "net": args.net, "steps_per_member": args.steps, "game": args.game,
              "overrides": args.set, "threads": 1, "seconds": seconds, "agent_steps_per_s": {a: round(v, 1) for a, v in rate.items()},
              "new_over_old": round(rate["new"] / rate["old"], 3),
              "loop_agent_steps_per_s": {a: [round(x, 1) for x in v] for a, v in in_loop.items()},
              "loop_new_over_old": round(loop["new"] / loop["old"], 3),
              "checkouts": {a: str(p) for a, p in arms.items()}}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
