"""loop.compile: the compiled update and acting passes compute what the eager ones do (CPU)."""
import pytest
import torch

from conftest import ROOT
from rlsmooth.config.yaml_files import apply_overrides, load_yaml
from rlsmooth.pieces.replay import Batch
from rlsmooth.training.skeleton import maybe_compile
from rlsmooth.agents.preflight import load_train_config

pytestmark = pytest.mark.slow   # each case compiles for 5-20 s on a 2-core CPU: run with pytest -m slow


def config(name, *overrides):
    return load_train_config(apply_overrides(load_yaml(ROOT / "configs" / name), ["device=cpu", *overrides]))


def batches(count, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [Batch(torch.randint(0, 2, (32, 4, 10, 10), dtype=torch.uint8, generator=g),
                  torch.randint(0, 6, (32,), generator=g), torch.rand(32, generator=g), torch.full((32,), 0.99),
                  torch.randint(0, 2, (32, 4, 10, 10), dtype=torch.uint8, generator=g)) for _ in range(count)]


@pytest.mark.parametrize("name, overrides", [
    ("minatar_dqn.yaml", []),
    ("minatar_c51.yaml", ["spectral.layers=[fc]"]),
    ("minatar_c51.yaml", ["optim.rho_scaling=lr+grad", "optim.rho_layers=[fc]"]),
    ("minatar_c51.yaml", ["spectral.layers=[fc]", "spectral.only_shrink=true"]),
])
def test_compiled_value_update_matches_eager_over_50_updates(name, overrides):
    from rlsmooth.agents import AGENTS
    from rlsmooth.agents.dqn import build_q_learner, update_step
    cfg = config(name, *overrides)
    losses, params = {}, {}
    for compiled in (False, True):
        torch.manual_seed(0)
        agent = AGENTS[cfg.agent].value_head(cfg)
        learner = build_q_learner(cfg, agent, (4, 10, 10), 6, torch.device("cpu"))
        agent = agent._replace(loss=maybe_compile(agent.loss, compiled, torch.device("cpu")))
        losses[compiled] = torch.stack([update_step(learner, agent, b, 0.0)["train/loss"] for b in batches(50)])
        q = maybe_compile(agent.q_values, compiled, torch.device("cpu"))
        with torch.no_grad():
            params[compiled] = q(learner.net, batches(1, seed=9)[0].obs)
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(params[True], params[False], rtol=1e-4, atol=1e-5)


def test_compiled_ppo_update_matches_eager():
    from rlsmooth.agents import ppo
    from rlsmooth.agents.ppo import Rollout, build_actor_critic_learner as build_learner
    cfg = config("minatar_ppo.yaml", "env.num_envs=4", "algo.num_steps=32", "loop.total_steps=1024",
                 "algo.update_epochs=13", "spectral.layers=[torso.fc]")   # 13 epochs x 4 minibatches = 52 updates
    g = torch.Generator().manual_seed(0)
    n = 128
    rollout = Rollout(torch.randint(0, 2, (n, 4, 10, 10), dtype=torch.uint8, generator=g),
                      torch.randint(0, 6, (n,), generator=g), -torch.rand(n, generator=g) * 2,
                      torch.randn(n, generator=g), torch.randn(n, generator=g), torch.randn(n, generator=g))
    results = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        learner = build_learner(cfg, (4, 10, 10), 6, torch.device("cpu"), message=lambda m: None)
        forward = maybe_compile(learner.net, compiled, torch.device("cpu"))
        torch.manual_seed(1)   # the minibatch order
        metrics = ppo.update(forward, learner.optimizer, learner.scaler, rollout, cfg)
        results[compiled] = (torch.stack(list(metrics.values())), [p.detach().clone() for p in learner.net.parameters()])
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-4, atol=1e-6)
    for a, b in zip(results[True][1], results[False][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compiled_training_run_end_to_end(chain_config, tmp_path):
    from conftest import run_cli
    out = tmp_path / "c"
    run_cli("train", chain_config("dqn", steps=600), "loop.compile=true", "--out", out, check=True, timeout=600)
    assert (out / "summary.json").is_file()
