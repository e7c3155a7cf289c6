"""The population mode: every member equals its solo run (state after fixed updates, and whole runs),
a killed population resumes to the uninterrupted one, sweeps pack cells into populations, and members
that cannot share a process are refused."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, assert_one_line_error, run_cli
from rlsmooth.agents import AGENTS
from rlsmooth.agents.dqn import build_q_learner, update_step
from rlsmooth.agents.preflight import load_train_config
from rlsmooth.config.yaml_files import apply_overrides, load_yaml
from rlsmooth.pieces.replay import Batch
from rlsmooth.pieces.seeding import SeedStreams
from rlsmooth.pieces.spectral import raw_weight
from rlsmooth.population.adam import StackedAdam
from rlsmooth.population.members import check_members, stack
from rlsmooth.population.stacked import _estimator


def minatar_cfg(name, *overrides):
    return load_train_config(apply_overrides(load_yaml(ROOT / "configs" / name), ["device=cpu", *overrides]))


class _Run:   # what ``stack`` reads from a member's run
    def __init__(self, learner):
        self.learner = learner


def solo_learners(cfgs):
    learners = []
    for cfg in cfgs:
        SeedStreams(cfg.seed).seed_globals()
        learners.append(build_q_learner(cfg, AGENTS[cfg.agent].value_head(cfg), (4, 10, 10), 6, torch.device("cpu")))
    return learners


def batches(count, k, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[Batch(torch.randint(0, 2, (32, 4, 10, 10), dtype=torch.uint8, generator=g),
                   torch.randint(0, 6, (32,), generator=g), torch.rand(32, generator=g), torch.full((32,), 0.99),
                   torch.randint(0, 2, (32, 4, 10, 10), dtype=torch.uint8, generator=g)) for _ in range(k)]
            for _ in range(count)]


@pytest.mark.parametrize("name, variants", [
    ("minatar_dqn.yaml", [["seed=0"], ["seed=1", "optim.lr=1e-4"], ["seed=2", "spectral.layers=[fc]"]]),
    # the Adam/SN study's cells, which share a process: no member scales a learning rate by rho
    ("minatar_dqn.yaml", [["seed=0", "spectral.track=[fc]"], ["seed=1", "spectral.layers=[fc]"],
                          ["seed=2", "spectral.track=[fc]", "optim.rho_scaling=grad", "optim.rho_layers=[fc]"]]),
    # and the other way round: learning-rate scaling with no member scaling gradients
    ("minatar_dqn.yaml", [["seed=0", "optim.rho_scaling=lr", "optim.rho_layers=[fc]"],
                          ["seed=1", "optim.rho_scaling=lr", "optim.rho_layers=[fc]", "optim.rho_only_shrink=false"]]),
    ("minatar_c51.yaml", [["seed=0"], ["seed=1", "spectral.layers=[fc]"],
                          ["seed=2", "optim.rho_scaling=lr+grad", "optim.rho_layers=[fc]"],
                          ["seed=3", "optim.rho_scaling=grad", "optim.rho_layers=[fc]", "optim.rho_only_shrink=false",
                           "spectral.k=2.0"]]),
])
def test_members_equal_their_solo_runs_over_50_updates(name, variants, capsys):
    cfgs = [minatar_cfg(name, *v) for v in variants]
    solo = solo_learners(cfgs)
    mirror = solo_learners(cfgs)   # the same initial state, trained as a population
    net, target, adam = stack([_Run(m) for m in mirror], cfgs, torch.device("cpu"))
    head = AGENTS[cfgs[0].agent].value_head(cfgs[0])
    heads = [AGENTS[c.agent].value_head(c) for c in cfgs]
    everyone = torch.ones(len(cfgs), dtype=torch.bool)
    for group in batches(50, len(cfgs)):
        for learner, h, b in zip(solo, heads, group):
            update_step(learner, h, b, 0.0)
        adam.zero_grad()
        loss, _ = head.loss(net, target, Batch(*[torch.stack(x) for x in zip(*group)]))
        loss.sum().backward()
        adam.step(everyone)
    worst = {"parameters": 0.0, "optimiser": 0.0, "sn": 0.0}
    for k, learner in enumerate(solo):
        params = dict(learner.net.named_parameters())
        for layer in net.layer_names:
            module = learner.net.get_submodule(layer)
            for solo_t, stacked_t in ((raw_weight(module), net.weight[layer][k]), (module.bias, net.bias[layer][k])):
                worst["parameters"] = max(worst["parameters"], float((solo_t - stacked_t).detach().abs().max()))
            estimator = _estimator(learner.net, layer)
            if estimator is not None:
                for kind in ("u", "v", "sigma"):
                    diff = (getattr(estimator, kind) - net.buffer(kind, layer)[k]).abs().max()
                    worst["sn"] = max(worst["sn"], float(diff))
        names = {id(p): n for n, p in params.items()}
        for p in learner.net.parameters():
            state = learner.optimizer.state[p]
            i = adam._slot(names[id(p)])
            assert float(state["step"]) == float(adam.steps[k]) == 50
            for key, stacked in (("exp_avg", adam.exp_avg[i][k]), ("exp_avg_sq", adam.exp_avg_sq[i][k])):
                scale = float(state[key].abs().max()) or 1.0
                worst["optimiser"] = max(worst["optimiser"], float((state[key] - stacked).abs().max()) / scale)
    with capsys.disabled():
        print(f"\n{name}: max |difference| to the solo runs after 50 updates: {worst}")
    assert worst == {"parameters": 0.0, "optimiser": 0.0, "sn": 0.0}   # bit for bit


def test_stacked_adam_is_torch_adam_per_member():
    torch.manual_seed(0)
    shapes = [(4, 3), (3,)]
    solo = [[torch.nn.Parameter(torch.randn(s)) for s in shapes] for _ in range(3)]
    lrs, epss = [1e-3, 3e-4, 1e-2], [1e-8, 3.125e-4, 1e-4]
    optims = [torch.optim.Adam(ps, lr=lr, eps=eps) for ps, lr, eps in zip(solo, lrs, epss)]

    class Net(torch.nn.Module):   # the attributes StackedAdam reads
        def __init__(self):
            super().__init__()
            self.members = 3
            self.rho_on = {}      # no rho layers
            self.weight = torch.nn.ParameterDict({"l": torch.nn.Parameter(torch.stack([p[0].detach() for p in solo]))})
            self.bias = torch.nn.ParameterDict({"l": torch.nn.Parameter(torch.stack([p[1].detach() for p in solo]))})
    net = Net()
    adam = StackedAdam(net, torch.tensor(lrs, dtype=torch.float64), torch.tensor(epss), torch.zeros(3), {}, {})
    for step in range(20):
        mask = torch.tensor([True, step % 2 == 0, step % 3 == 0])   # members may skip a step
        grads = [[torch.randn(s) for s in shapes] for _ in range(3)]
        for k, (ps, opt) in enumerate(zip(solo, optims)):
            if mask[k]:
                for p, g in zip(ps, grads[k]):
                    p.grad = g
                opt.step()
        net.weight["l"].grad = torch.stack([g[0] for g in grads])
        net.bias["l"].grad = torch.stack([g[1] for g in grads])
        adam.step(mask)
    for k in range(3):
        torch.testing.assert_close(net.weight["l"][k], solo[k][0].detach(), rtol=0, atol=0)
        torch.testing.assert_close(net.bias["l"][k], solo[k][1].detach(), rtol=0, atol=0)


def metric_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


VARIANTS = {"baseline": [], "sn_fc": ["spectral.layers=[fc]"],
            "rho_fc": ["optim.rho_scaling=lr+grad", "optim.rho_layers=[fc]"]}


def population_sweep(tmp_path, chain_config, steps=1000):
    base = chain_config(steps=steps)
    sweep = tmp_path / "pop.yaml"
    variants = {name: {o.split("=")[0]: yaml_value(o.split("=", 1)[1]) for o in ov} for name, ov in VARIANTS.items()}
    import yaml
    sweep.write_text(yaml.safe_dump({"base": str(base), "out": str(tmp_path / "pop"),
                                     "set": {"spectral.track": ["fc"], "spectral.log_every": 50},
                                     "axes": {"seed": [0, 1, 2], "variant": variants}}))
    return sweep


def yaml_value(text):
    import yaml
    return yaml.safe_load(text)


@pytest.mark.slow
def test_a_mixed_population_writes_what_its_solo_runs_write(tmp_path, chain_config):
    sweep = population_sweep(tmp_path, chain_config)
    proc = run_cli("sweep", sweep, "--population", "9", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list((tmp_path / "pop" / "populations").glob("*.json"))   # one process trained all nine
    solo = run_cli("sweep", sweep, "--out", tmp_path / "solo", "--workers", "2", timeout=900)
    assert solo.returncode == 0
    worst = 0.0
    for cell in sorted(p for p in (tmp_path / "pop").iterdir() if p.name.startswith("seed=")):
        a, b = metric_rows(cell), metric_rows(tmp_path / "solo" / cell.name)
        assert [r["step"] for r in a] == [r["step"] for r in b] and [r.keys() for r in a] == [r.keys() for r in b]
        for ra, rb in zip(a, b):
            for key, value in ra.items():
                worst = max(worst, abs(value - rb[key]) / max(abs(rb[key]), 1e-8))
        assert (cell / "summary.json").is_file() and (cell / "sweep_cell.json").is_file()
    print(f"\nworst relative difference of a logged number to the solo runs: {worst:.2e}")
    assert worst == 0.0
    # each member directory is a run directory: eval and compare read it as a solo run's
    assert "return 0.96" in run_cli("eval", tmp_path / "pop" / "seed=0__variant=sn_fc", "--episodes", "2",
                                    check=True).stdout
    result = run_cli("compare", tmp_path / "pop", "--out", tmp_path / "rep", "--reps", "100", check=True)
    assert "9 runs" in result.stdout


@pytest.mark.slow
def test_a_killed_population_resumes_to_the_uninterrupted_one(tmp_path, chain_config):
    cfg = chain_config(steps=3000)
    full = tmp_path / "full"
    run_cli("train", cfg, "loop.checkpoint_every=70", "--population", "3", "--out", full, check=True, timeout=600)
    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for attempt in range(3):
        args = (["train", "--resume", str(killed)] if attempt else
                ["train", str(cfg), "loop.checkpoint_every=70", "--population", "3", "--out", str(killed)])
        proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(4 + 2 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_cli("train", "--resume", killed, check=True, timeout=600)
    for seed in (0, 1, 2):
        assert metric_rows(killed / f"seed={seed}") == metric_rows(full / f"seed={seed}")


def test_members_that_cannot_share_a_process_are_refused():
    from rlsmooth.errors import ConfigError
    dqn, c51 = minatar_cfg("minatar_dqn.yaml"), minatar_cfg("minatar_c51.yaml")
    with pytest.raises(ConfigError, match="cannot share a population: agent"):
        check_members([dqn, c51])
    with pytest.raises(ConfigError, match="network.hidden"):
        check_members([dqn, minatar_cfg("minatar_dqn.yaml", "network.hidden=[64]")])
    with pytest.raises(ConfigError, match="algo.replay_capacity"):
        check_members([dqn, minatar_cfg("minatar_dqn.yaml", "algo.replay_capacity=50000")])
    check_members([dqn, minatar_cfg("minatar_dqn.yaml", "seed=3", "optim.lr=1e-3", "spectral.layers=[fc]")])


def test_actor_critic_refuses_the_population_mode(tmp_path):
    proc = run_cli("train", ROOT / "configs" / "minatar_ppo.yaml", "--population", "2", "--out", tmp_path / "p")
    assert_one_line_error(proc, "population mode trains value-based agents")


def test_a_failing_member_does_not_stop_the_others(tmp_path, chain_config):
    sweep = population_sweep(tmp_path, chain_config, steps=300)
    out = tmp_path / "pop"
    out.mkdir()
    (out / "seed=1__variant=baseline").write_text("a file where a run directory should be")
    proc = run_cli("sweep", sweep, "--population", "9", timeout=600)
    assert proc.returncode == 1 and proc.stdout.count("failed") >= 1
    finished = [p for p in out.iterdir() if (p / "summary.json").is_file()]
    assert len(finished) == 8


SHORT_RUN = ["loop.total_steps={steps}", "algo.learning_starts=300", "algo.epsilon_decay_steps=800",
             "algo.target_update_every=400", "loop.eval_every=1000", "loop.eval_steps=200", "loop.log_every=200",
             "loop.checkpoint_every=1000", "loop.progress=false", "spectral.track=[fc]", "spectral.log_every=200"]
MEMBER_VARIANTS = {"baseline": [], "sn_fc": ["spectral.layers=[fc]"],
                   "grad_fc": ["optim.rho_scaling=grad", "optim.rho_layers=[fc]"],
                   "lr_grad_fc": ["optim.rho_scaling=lr+grad", "optim.rho_layers=[fc]"],
                   "divout_fc": ["optim.rho_scaling=divout", "optim.rho_layers=[fc]"]}


def assert_population_equals_solo_runs(tmp_path, preset, net=(), steps=2000):
    """Train the five variants as default solo runs and as one population: every logged number but
    time/* must be the same (the members compute their solo runs' numbers bit for bit)."""
    from rlsmooth.population.loop import train_population
    overrides = [o.format(steps=steps) for o in SHORT_RUN] + list(net)
    cfgs = [minatar_cfg(preset, *overrides, f"seed={i}", *v) for i, v in enumerate(MEMBER_VARIANTS.values())]
    for mode in ("solo", "pop"):
        for name in MEMBER_VARIANTS:
            (tmp_path / mode / name).mkdir(parents=True)
    for name, cfg in zip(MEMBER_VARIANTS, cfgs):
        AGENTS[cfg.agent].train(cfg, tmp_path / "solo" / name)
    members = train_population(cfgs, [tmp_path / "pop" / n for n in MEMBER_VARIANTS], [False] * len(cfgs))
    assert all(m.error is None for m in members)
    for name in MEMBER_VARIANTS:
        solo, member = metric_rows(tmp_path / "solo" / name), metric_rows(tmp_path / "pop" / name)
        assert any("eval/episode_return" in r for r in solo) and any("spectral/sigma/fc" in r for r in solo)
        assert member == solo, name
        assert (json.loads((tmp_path / "pop" / name / "summary.json").read_text())
                == json.loads((tmp_path / "solo" / name / "summary.json").read_text()))


@pytest.mark.heavy
def test_a_population_member_equals_its_default_solo_run_over_a_whole_run(tmp_path):
    assert_population_equals_solo_runs(tmp_path, "minatar_dqn.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["minatar_dqn.yaml", "minatar_c51.yaml"])
@pytest.mark.parametrize("net", [(), ("network.channels=[32,32,24]", "network.hidden=[256]")], ids=["default", "large"])
def test_population_members_equal_solo_runs_for_every_agent_and_torso(tmp_path, preset, net):
    assert_population_equals_solo_runs(tmp_path, preset, net, steps=3000)
