"""Where a DQN training step goes, measured in the running loop: a MinAtar population, or one solo run.

    OMP_NUM_THREADS=1 python bench/loop_profile.py [--members 9] [--net c32_h256] [--steps 4000] [--json FILE]
    OMP_NUM_THREADS=1 python bench/loop_profile.py --solo configs/atari_dqn_cpu.yaml --precision fp32,bf16 \
        [--steps 3000] [--json FILE]

The run learns from agent step 1,000 with epsilon at its floor from step 2,000 (the late-training
mix: a greedy acting pass every step, an update every four), and wall-clock counters around the
parts of each step time them:

* ``acting``: the exploration draws and the greedy forward pass (``Population.act``, or the solo
  loop's ``epsilon_greedy``);
* ``replay sampling and gather``: ``FrameReplay.sample`` (drawing the starts, their n-step targets,
  and the frame-stack gather), inside the update;
* ``update``: the rest of the update: the forward passes of the online and target nets, the loss,
  the backward pass and the Adam step (for a population, its stacked Adam step apart);
* ``env steps``: the envs' ``send`` and ``recv`` (ale-py steps its emulators in its own threads
  between the two, while the loop acts and learns: what is counted is the time the loop waits);
* ``replay add``: storing each transition;
* ``logging, evaluation, checkpoints``: what the loop does when they are due;
* ``per-member Python`` (population) or ``the rest`` (solo, its start-up included): schedules,
  counters, episode statistics.

A population's stacked update is then profiled alone on a fixed batch under ``torch.profiler``, split
into operator families (convolution forward and backward, matrix products, copies, element-wise, Adam).
The process's kernel time and minor page faults are reported beside the loop's time.
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from rlsmooth.agents import AGENTS
from rlsmooth.agents.preflight import load_train_config
from rlsmooth.config.yaml_files import CONFIGS, apply_overrides, load_yaml
from rlsmooth.experiments.bench_peak import population_update
from rlsmooth.experiments.bench_population import NETS
from rlsmooth.pieces.replay import FrameReplay
from rlsmooth.agents import dqn
from rlsmooth.population import loop
from rlsmooth.population.adam import StackedAdam
from rlsmooth.training.skeleton import RunSkeleton

TOTALS: dict[str, float] = defaultdict(float)


STACK: list[float] = []   # the time spent in timed parts nested inside each part that is running


def timed(owner, name: str, part: str) -> None:
    """Wrap ``owner.name`` so that its wall-clock time, less that of the timed parts it calls (an
    evaluation's acting passes, an update's replay sampling), adds to ``TOTALS[part]``."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        STACK.append(0.0)
        try:
            return inner(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            TOTALS[part] += elapsed - STACK.pop()
            if STACK:
                STACK[-1] += elapsed
    setattr(owner, name, wrapper)


def short_run(steps: int) -> list[str]:
    return [f"loop.total_steps={steps}", "algo.learning_starts=1000", "algo.epsilon_decay_steps=1000",
            "algo.target_update_every=1000", "loop.eval_every=0", "loop.eval_steps=100",
            f"loop.log_every={max(steps // 4, 1)}", "loop.checkpoint_every=0", "loop.save_replay=false",
            "loop.progress=false", "threads=1", "device=cpu"]


def measured(train, what: dict, steps_done: int) -> dict:
    """Run ``train()`` with the counters reset; the loop's parts, its rate and the kernel's share."""
    TOTALS.clear()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    train()
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    parts = {name: TOTALS.get(key, 0.0) for name, key in what.items()}
    if "total" in TOTALS:   # a population: the loop's own time is what its iterations spend outside the parts
        parts["per-member Python"] = TOTALS["total"]
        total = sum(parts.values())
    else:                   # a solo run's whole call: its start-up is part of "the rest"
        total = wall
        parts["the rest"] = total - sum(parts.values())
    return {"wall_s": wall, "loop_s": total, "agent_steps_per_s": steps_done / total, "parts_s": parts,
            "system_s": after.ru_stime - before.ru_stime, "minor_page_faults": after.ru_minflt - before.ru_minflt}


def wrap_common() -> None:
    for owner, name, part in ((FrameReplay, "sample", "replay sampling"), (FrameReplay, "add", "replay add"),
                              (RunSkeleton, "log_if_due", "logging"), (RunSkeleton, "end_of_iteration", "logging")):
        timed(owner, name, part)


def population_parts(net: str, members: int, steps: int, game: str) -> dict:
    cfgs = [load_train_config(apply_overrides(load_yaml(CONFIGS / NETS[net]),
                                              [f"env.game={game}", *short_run(steps), f"seed={i}"]))
            for i in range(members)]
    wrap_common()
    for owner, name, part in ((loop.Population, "iterate", "total"), (loop.Population, "act", "acting"),
                              (loop.Population, "update", "update (all)"), (StackedAdam, "step", "adam step"),
                              (loop, "to_solo", "logging"), (loop, "sigma_from_solo", "logging")):
        timed(owner, name, part)
    original = loop.Population.iterate

    def iterate(self):   # the env objects exist once the members do: wrap theirs on the first step
        if not getattr(self, "_env_timed", False):
            for m in self.members:
                timed(m.run.env, "send", "env steps")
                timed(m.run.env, "recv", "env steps")
            self._env_timed = True
        return original(self)
    loop.Population.iterate = iterate

    def train():
        with tempfile.TemporaryDirectory() as tmp:
            dirs = [Path(tmp) / f"seed={i}" for i in range(members)]
            for d in dirs:
                d.mkdir()
            failed = [m.error for m in loop.train_population(cfgs, dirs, [False] * members) if m.error]
        if failed:
            raise SystemExit(f"a member failed: {failed[0]}")
    what = {"acting": "acting", "replay sampling and gather": "replay sampling",
            "update: forward, loss, backward": "update (all)", "update: stacked Adam step": "adam step",
            "env steps": "env steps", "replay add": "replay add", "logging, evaluation, checkpoints": "logging"}
    return measured(train, what, members * steps)


def solo_parts(config: Path, precisions: list[str], steps: int) -> dict:
    """One solo run per precision, the same seed; its env's send and recv are wrapped on its class."""
    wrap_common()
    timed(dqn, "epsilon_greedy", "acting")
    timed(dqn, "update_step", "update")
    out = {}
    for precision in precisions:
        cfg = load_train_config(apply_overrides(load_yaml(config), [*short_run(steps), f"loop.precision={precision}"]))
        env_class = None

        def train():
            nonlocal env_class
            with tempfile.TemporaryDirectory() as tmp:
                AGENTS[cfg.agent].train(cfg, Path(tmp))
        original = dqn.start_value_run

        def start(*args, **kwargs):   # wrap the env's class once it exists
            nonlocal env_class
            started = original(*args, **kwargs)
            if env_class is None:
                env_class = type(started.run.env)
                timed(env_class, "send", "env steps")
                timed(env_class, "recv", "env steps")
            return started
        dqn.start_value_run = start
        what = {"acting": "acting", "replay sampling and gather": "replay sampling",
                "update: forward, loss, backward, Adam": "update", "env steps": "env steps",
                "replay add": "replay add", "logging, evaluation, checkpoints": "logging"}
        out[precision] = measured(train, what, steps)
        dqn.start_value_run = original
    return out


FAMILIES = (("convolution backward", ("convolution_backward",)), ("convolution forward", ("mkldnn_convolution",)),
            ("matrix products", ("bmm", "baddbmm", "mm", "addmm")), ("copies", ("copy_",)),
            ("Adam kernel", ("_fused_adam_",)))


def update_ops(net: str, members: int, calls: int = 20) -> dict:
    update, flops = population_update(net, members, "fp32")
    for _ in range(5):
        update()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            update()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / calls
    out = {}
    for family, names in FAMILIES:
        out[family] = sum(e.self_cpu_time_total for e in events if e.key.split("::")[1] in names) / 1e3 / calls
    out["element-wise and the rest"] = total - sum(out.values())
    return {"ms_per_update": out, "total_ms": total, "gflop_per_update": flops / 1e9}


def show(title: str, parts: dict) -> None:
    print(f"{title}: {parts['agent_steps_per_s']:.0f} agent steps/s over {parts['loop_s']:.1f} s of loop; kernel "
          f"time {parts['system_s']:.1f} s, {parts['minor_page_faults']:,} minor page faults")
    for name, seconds in sorted(parts["parts_s"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:38s} {seconds:7.2f} s  {100 * seconds / parts['loop_s']:5.1f}%")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--members", type=int, default=9)
    p.add_argument("--net", choices=sorted(NETS), default="c32_h256")
    p.add_argument("--steps", type=int, default=4000, help="agent steps per member")
    p.add_argument("--game", default="asterix")
    p.add_argument("--solo", type=Path, default=None, metavar="CONFIG", help="profile one solo DQN-family run instead")
    p.add_argument("--precision", default="fp32", help="with --solo: fp32, bf16 or both (fp32,bf16)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.solo is not None:
        report = {"solo": str(args.solo), "steps": args.steps, "threads": 1,
                  "by_precision": solo_parts(args.solo, args.precision.split(","), args.steps)}
        for precision, parts in report["by_precision"].items():
            show(f"{args.solo.name} at {precision}, {args.steps:,} agent steps, one thread", parts)
    else:
        parts, ops = population_parts(args.net, args.members, args.steps, args.game), update_ops(args.net, args.members)
        report = {"members": args.members, "net": args.net, "steps_per_member": args.steps, "game": args.game,
                  "threads": 1, "loop": parts, "update": ops}
        show(f"population of {args.members}, {args.net} torso, {args.steps:,} agent steps each, one thread", parts)
        print(f"one stacked update on a fixed batch (torch.profiler, operator self time): {ops['total_ms']:.1f} ms, "
              f"{ops['gflop_per_update']:.2f} GFLOP")
        for name, ms in sorted(ops["ms_per_update"].items(), key=lambda kv: -kv[1]):
            print(f"  {name:38s} {ms:7.2f} ms  {100 * ms / ops['total_ms']:5.1f}%")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
