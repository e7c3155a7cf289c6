"""env.suite gym: any registered Gymnasium env with Box observations and Discrete actions, float
observations kept as floats through the replay, an MLP torso named fc1 ... out so the SN and rho
selectors apply unchanged, truncation told apart from termination, and bad ids as one line."""
import json

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_one_line_error, run_cli
from rlsmooth.agents import algo_classes
from rlsmooth.config.sections import parse_train_config
from rlsmooth.config.yaml_files import load_yaml
from rlsmooth.pieces.envs import make_vec_env
from rlsmooth.pieces.networks import build_q_network, named_layers
from rlsmooth.pieces.replay import FrameReplay
from rlsmooth.pieces.seeding import SeedStreams

PRESET = ROOT / "configs" / "gym_dqn_cartpole.yaml"


def gym_cfg(game="CartPole-v1", **network):
    data = load_yaml(PRESET)
    data["env"]["game"] = game
    data["network"].update(network)
    return parse_train_config(data, algo_classes())


def test_mlp_layers_are_named_fc1_to_out():
    cfg = gym_cfg()
    env = make_vec_env(cfg.env, SeedStreams(0).env_seeds(0, 1), training=True)
    net = build_q_network(cfg.network, "gym", env.obs_shape, env.num_actions)
    assert [name for name, _ in named_layers(net)] == ["fc1", "fc2", "out"]
    assert env.obs_shape == (4, 1, 1) and env.num_actions == 2
    obs = env.reset()
    assert obs.dtype == np.float32
    assert net(torch.from_numpy(obs)).shape == (1, 2)


def test_replay_keeps_float_observations_exactly():
    cfg = gym_cfg()
    env = make_vec_env(cfg.env, SeedStreams(0).env_seeds(0, 2), training=True)
    replay = FrameReplay(1000, 2, env.obs_shape, dtype=env.obs_dtype)
    obs = env.reset()
    replay.start(obs)
    seen = []
    for _ in range(200):
        step = env.step(np.zeros(2, np.int64))
        replay.add(np.zeros(2, np.int64), step.reward, step.terminal, step.episode_end, step.obs, step.final_obs)
        seen.append(step.final_obs)
    batch = replay.sample(64)
    assert batch.obs.dtype == torch.float32
    stored = np.concatenate(seen).reshape(-1, 4)
    for row in batch.next_obs.numpy().reshape(-1, 4):   # every sampled next state is a real one, unrounded
        assert np.abs(stored - row).max(axis=1).min() == 0.0


def test_truncation_is_an_episode_end_without_a_terminal():
    cfg = gym_cfg("MountainCar-v0")   # a 200-step TimeLimit that pushing left never beats
    env = make_vec_env(cfg.env, SeedStreams(0).env_seeds(0, 1), training=True)
    env.reset()
    ends = [env.step(np.zeros(1, np.int64)) for _ in range(200)]
    assert not any(s.episode_end[0] for s in ends[:-1])
    assert ends[-1].episode_end[0] and not ends[-1].terminal[0]
    cart = make_vec_env(gym_cfg().env, SeedStreams(0).env_seeds(0, 1), training=True)
    cart.reset()
    steps = [cart.step(np.zeros(1, np.int64)) for _ in range(60)]   # always left: the pole falls
    fell = next(s for s in steps if s.episode_end[0])
    assert fell.terminal[0]


def test_seeds_give_the_same_episodes():
    cfg = gym_cfg()
    first = [make_vec_env(cfg.env, SeedStreams(s).env_seeds(0, 1), training=True).reset() for s in (3, 3, 4)]
    assert (first[0] == first[1]).all() and not (first[0] == first[2]).all()


def test_short_cartpole_run_with_sn_on_fc2(tmp_path):
    out = tmp_path / "run"
    run_cli("train", PRESET, "loop.total_steps=600", "algo.learning_starts=200", "loop.eval_every=300",
            "loop.eval_steps=200", "loop.eval_episodes=0", "spectral.layers=[fc2]", "optim.rho_scaling=grad",
            "optim.rho_layers=[fc1]", "--out", out, check=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("spectral/sigma/fc2" in r for r in rows)
    assert rows[-1]["step"] == 600


@pytest.mark.parametrize("game, needle", [("CartPol-v1", "did you mean CartPole-v1"),
                                          ("FrozenLake-v1", "Box and Discrete")])
def test_bad_gym_envs_are_one_line(game, needle, tmp_path):
    assert_one_line_error(run_cli("train", PRESET, f"env.game={game}", "--out", tmp_path / "r"), needle)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_dqn_learns_cartpole(tmp_path):
    out = tmp_path / "run"
    run_cli("train", PRESET, "threads=1", "loop.progress=false", "--out", out, check=True, timeout=1200)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval/episode_return"] > 400
