"""Evaluation phases and the diagnostics computed at them."""
import numpy as np
import pytest
import torch

from rlsmooth.config.sections import EnvConfig
from rlsmooth.pieces.envs import make_vec_env
from rlsmooth.training.diagnostics import diagnostics, input_gradient_norms, srank
from rlsmooth.training.evaluation import eval_metrics, evaluate


def chain(n=2):
    return make_vec_env(EnvConfig(suite="test", game="chain"), [np.zeros(4, np.uint32)] * n, training=False)


def test_whole_episodes_only_and_their_returns():
    result = evaluate(chain(), lambda obs: np.ones(len(obs), np.int64), steps=20)
    # always right: 5 steps to the goal, return 4 * -0.01 + 1; 10 agent steps per env hold 2 episodes each
    assert result.returns == pytest.approx([0.96] * 4) and result.lengths == [5] * 4
    episodes = evaluate(chain(), lambda obs: np.ones(len(obs), np.int64), steps=20, episodes=3)
    assert len(episodes.returns) == 3
    metrics = eval_metrics(result, "test", "chain")
    assert metrics["eval/episode_return"] == pytest.approx(0.96) and metrics["eval/episodes"] == 4
    assert eval_metrics(evaluate(chain(), lambda obs: np.zeros(len(obs), np.int64), steps=4), "test", "chain") == \
        {"eval/episodes": 0.0}


def test_srank_against_its_definition():
    u, _ = torch.linalg.qr(torch.randn(50, 50, dtype=torch.float64))
    s = torch.tensor([10.0, 5.0, 1.0, 0.001] + [0.0] * 6, dtype=torch.float64)
    features = u[:, :10] @ torch.diag(s)
    assert srank(features) == 3   # 16 of 16.001 is beyond (1 - 0.01) of the sum after three values


def test_input_gradient_norm_of_a_linear_q_function():
    net = torch.nn.Linear(4, 2, bias=False)
    net.obs_scale = 1.0
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[3.0, 0.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]]))
    states = torch.ones(3, 4)
    norms = input_gradient_norms(net, lambda n, x: n(x), states)
    assert torch.allclose(norms, torch.full((3,), 5.0))   # ||dQ(x, a*)/dx|| = ||w_{a*}||
    net.features = lambda x: x
    out = diagnostics(net, lambda n, x: n(x), np.ones((3, 4), np.float32), torch.device("cpu"))
    assert out["diagnostics/lipschitz_max"] == pytest.approx(5.0)


class _Lengths:
    """Env i's episodes last 2 + 3 i steps and score their length: short episodes score low."""

    def __init__(self, n):
        from types import SimpleNamespace
        self.num_envs, self.obs_shape, self.obs_dtype = n, (1,), np.float32
        self.t = np.zeros(n, np.int64)
        self.ns = SimpleNamespace

    def reset(self):
        return np.zeros((self.num_envs, 1), np.float32)

    def step(self, actions):
        self.t += 1
        end = self.t >= 2 + 3 * np.arange(self.num_envs)
        reward = np.where(end, (2 + 3 * np.arange(self.num_envs)).astype(float), 0.0)
        self.t[end] = 0
        return self.ns(obs=self.reset(), raw_reward=reward, episode_end=end)


def test_a_number_of_episodes_is_shared_as_quotas_not_the_first_to_end():
    from rlsmooth.training.evaluation import evaluate
    env = _Lengths(4)
    result = evaluate(env, lambda obs: np.zeros(len(obs), np.int64), steps=10_000, episodes=8, keep_states=0)
    # two episodes from each env, whatever their lengths: the mean is the envs' mean, not the short ones'
    assert len(result.returns) == 8 and sorted(result.returns) == [2, 2, 5, 5, 8, 8, 11, 11]
    assert np.mean(result.returns) == np.mean([2, 5, 8, 11])
    odd = evaluate(_Lengths(4), lambda obs: np.zeros(len(obs), np.int64), steps=10_000, episodes=6, keep_states=0)
    assert sorted(odd.returns) == [2, 5, 8, 8, 11, 11]   # quotas (6 + i) // 4 = 1, 1, 2, 2
