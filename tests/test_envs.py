import numpy as np
import pytest

from rlsmooth.config import ConfigError, EnvConfig
from rlsmooth.envs import check_game, make_vec_env


def test_chain_env_terminal_truncation_and_autoreset():
    env = make_vec_env(EnvConfig(suite="test", game="chain"), 2, seed=0, training=True)
    obs = env.reset()
    assert obs.shape == (2, 1, 10, 10) and obs[:, 0, 0, 0].tolist() == [1, 1]
    for _ in range(4):
        step = env.step(np.array([1, 0]))
    step = env.step(np.array([1, 0]))       # env 0 reaches the goal at its 5th step right
    assert step.terminal.tolist() == [True, False] and step.episode_end.tolist() == [True, False]
    assert step.final_obs[0, 0, 0, 5] == 1 and step.obs[0, 0, 0, 0] == 1   # reset in the same step
    assert step.reward[0] == 1.0
    for _ in range(15):
        step = env.step(np.array([0, 0]))
    assert step.episode_end[1] and not step.terminal[1]    # truncated after 20 steps: bootstrap


def test_unknown_game_lists_close_matches():
    with pytest.raises(ConfigError, match="did you mean space_invaders"):
        check_game(EnvConfig(suite="atari", game="space_invader"))
    with pytest.raises(ConfigError, match="unknown minatar game 'pong'"):
        check_game(EnvConfig(suite="minatar", game="pong"))


def test_minatar_env_shapes_and_seeding():
    pytest.importorskip("minatar")
    cfg = EnvConfig(suite="minatar", game="breakout")
    a = make_vec_env(cfg, 2, seed=3, training=True)
    b = make_vec_env(cfg, 2, seed=3, training=True)
    oa, ob = a.reset(), b.reset()
    np.testing.assert_array_equal(oa, ob)
    assert oa.shape == (2, 4, 10, 10) and a.num_actions == 6
    rng = np.random.default_rng(0)
    for _ in range(50):
        act = rng.integers(0, 6, 2)
        sa, sb = a.step(act), b.step(act)
        np.testing.assert_array_equal(sa.obs, sb.obs)


def test_atari_paper_protocol_life_loss_and_clipping():
    cfg = EnvConfig(suite="atari", game="breakout", protocol="paper")
    train = make_vec_env(cfg, 2, seed=0, training=True)
    obs = train.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    life_losses = 0
    for _ in range(400):
        step = train.step(rng.integers(0, train.num_actions, 2))
        assert np.all(np.abs(step.reward) <= 1.0)
        life_losses += int((step.terminal & ~step.episode_end).sum())
    assert life_losses > 0        # a lost life ends the bootstrap but not the game
    evaluation = make_vec_env(cfg, 1, seed=0, training=False)
    evaluation.reset()
    for _ in range(200):
        step = evaluation.step(np.array([1]))
        assert not (step.terminal & ~step.episode_end).any()
