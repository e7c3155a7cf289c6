import numpy as np
import pytest

from rlsmooth.pieces import seeding
from rlsmooth.config.sections import EnvConfig
from rlsmooth.errors import ConfigError
from rlsmooth.pieces.envs import check_game, make_vec_env
from rlsmooth.pieces.seeding import EVAL_ENV, TRAIN_ENV, SeedStreams, ale_seed


def all_env_seeds(seed, n):
    streams = SeedStreams(seed)
    words = streams.env_seeds(TRAIN_ENV, n, 0) + streams.env_seeds(EVAL_ENV, n)
    return [tuple(w.tolist()) for w in words], [ale_seed(w) for w in words]


@pytest.mark.parametrize("n", [1, 2, 8, 64, 256])
def test_seeds_s_and_s_plus_1_share_no_env_stream(n):
    for s in (0, 1, 41, 2**40):
        words_a, ale_a = all_env_seeds(s, n)
        words_b, ale_b = all_env_seeds(s + 1, n)
        # within a run every env (train and eval) has its own stream, and across runs none is shared
        assert len(set(words_a)) == 2 * n and not set(words_a) & set(words_b)
        assert len(set(ale_a)) == 2 * n and not set(ale_a) & set(ale_b)
    # the other streams of a run differ between seeds too
    a, b = SeedStreams(0), SeedStreams(1)
    for kind in (seeding.INIT, seeding.POLICY, seeding.REPLAY, seeding.PYTHON):
        assert a.sequence(kind).generate_state(4).tolist() != b.sequence(kind).generate_state(4).tolist()
        assert a.sequence(kind).generate_state(4).tolist() == SeedStreams(0).sequence(kind).generate_state(4).tolist()


def test_minatar_runs_with_neighbouring_seeds_play_different_games():
    pytest.importorskip("minatar")
    cfg = EnvConfig(suite="minatar", game="space_invaders")
    n = 8
    runs = [make_vec_env(cfg, SeedStreams(s).env_seeds(TRAIN_ENV, n), training=True) for s in (0, 1)]
    for env in runs:
        env.reset()
    trajectories = [[], []]
    for t in range(60):
        actions = np.full(n, t % 6)
        for i, env in enumerate(runs):
            trajectories[i].append(env.step(actions).obs)
    a, b = np.stack(trajectories[0], 1), np.stack(trajectories[1], 1)   # (n, T, C, H, W)
    # with seed+i seeding, env i+1 of seed 0 replayed env i of seed 1 exactly; now no pair matches
    for i in range(n):
        for j in range(n):
            assert not np.array_equal(a[i], b[j])


@pytest.mark.parametrize("protocol", ["paper", "sticky"])
def test_training_rewards_clipped_evaluation_raw_under_both_protocols(protocol):
    cfg = EnvConfig(suite="atari", game="space_invaders", protocol=protocol)
    seeds = SeedStreams(0).env_seeds(TRAIN_ENV, 2)
    train = make_vec_env(cfg, seeds, training=True)
    raw_env = make_vec_env(cfg, seeds, training=False)
    train.reset(), raw_env.reset()
    rng = np.random.default_rng(0)
    big = 0
    for _ in range(300):
        actions = rng.integers(0, train.num_actions, 2)
        a, b = train.step(actions), raw_env.step(actions)
        np.testing.assert_array_equal(a.raw_reward, b.raw_reward)      # same seeds, same game
        np.testing.assert_array_equal(a.reward, np.clip(a.raw_reward, -1, 1))
        np.testing.assert_array_equal(b.reward, b.raw_reward)           # evaluation: raw scores
        big += int((a.raw_reward > 1).sum())
    assert big > 0    # Space Invaders scores 5-30 per alien: clipping was exercised
    unclipped = make_vec_env(EnvConfig(suite="atari", game="space_invaders", protocol=protocol, clip_rewards=False),
                             seeds, training=True)
    assert not unclipped.clip_rewards


@pytest.mark.parametrize("suite,game,protocol", [("atari", "pong", "paper"), ("atari", "pong", "sticky"),
                                                 ("atari", "breakout", "paper"), ("minatar", "breakout", "paper")])
def test_an_evaluation_env_sees_the_training_envs_frames_for_the_same_seeds_and_actions(suite, game, protocol):
    """An evaluation env is the training env's game: same seeds and actions give the same frames,
    scores and episode ends (only the learner's reward and life-loss terminals differ; Breakout has
    lives, so that difference is crossed)."""
    cfg = EnvConfig(suite=suite, game=game, protocol=protocol)
    seeds = SeedStreams(0).env_seeds(TRAIN_ENV, 2)
    train, evaluation = make_vec_env(cfg, seeds, training=True), make_vec_env(cfg, seeds, training=False)
    np.testing.assert_array_equal(train.reset(), evaluation.reset())
    rng = np.random.default_rng(0)
    ends = life_losses = 0
    for _ in range(1500):   # a random Pong game lasts about 800-1000 agent steps
        actions = rng.integers(0, train.num_actions, 2)
        a, b = train.step(actions), evaluation.step(actions)
        np.testing.assert_array_equal(a.obs, b.obs, err_msg=f"step {_}")
        np.testing.assert_array_equal(a.raw_reward, b.raw_reward)
        np.testing.assert_array_equal(a.episode_end, b.episode_end)
        np.testing.assert_array_equal(a.final_obs[a.episode_end], b.final_obs[b.episode_end])
        np.testing.assert_array_equal(b.terminal, b.episode_end)      # evaluation: only a game over
        assert not (b.terminal & ~a.terminal).any()                    # training ends there too
        ends += int(a.episode_end.sum())
        life_losses += int((a.terminal & ~a.episode_end).sum())
    assert ends >= 1   # an episode ended and both envs reset it alike
    if suite == "atari" and game == "breakout":
        assert life_losses >= 1   # a lost life ended a value target in training only
    train.close(), evaluation.close()


def test_chain_env_terminal_truncation_and_autoreset():
    env = make_vec_env(EnvConfig(suite="test", game="chain"), SeedStreams(0).env_seeds(TRAIN_ENV, 2), training=True)
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
    a = make_vec_env(cfg, SeedStreams(3).env_seeds(TRAIN_ENV, 2), training=True)
    b = make_vec_env(cfg, SeedStreams(3).env_seeds(TRAIN_ENV, 2), training=True)
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
    train = make_vec_env(cfg, SeedStreams(0).env_seeds(TRAIN_ENV, 2), training=True)
    obs = train.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    life_losses = 0
    for _ in range(400):
        step = train.step(rng.integers(0, train.num_actions, 2))
        assert np.all(np.abs(step.reward) <= 1.0)
        life_losses += int((step.terminal & ~step.episode_end).sum())
    assert life_losses > 0        # a lost life ends the bootstrap but not the game
    evaluation = make_vec_env(cfg, SeedStreams(0).env_seeds(TRAIN_ENV, 1), training=False)
    evaluation.reset()
    for _ in range(200):
        step = evaluation.step(np.array([1]))
        assert not (step.terminal & ~step.episode_end).any()


@pytest.mark.parametrize("game, cap", [("space_invaders", 400), ("space_invaders", 800), ("breakout", 400)])
def test_frame_capped_episode_ends_with_the_whole_last_observation(game, cap):
    """At the frame cap the final observation is the one the emulator shows after that step: the
    same stack as an uncapped copy of the env, stepped with the same actions, shows at that step.
    (ale-py's own cap cuts the last step short and returns a wrong newest frame.)"""
    from ale_py.vector_env import AtariVectorEnv
    n = 3
    seeds = SeedStreams(7).env_seeds(TRAIN_ENV, n)
    env = make_vec_env(EnvConfig(suite="atari", game=game, max_episode_frames=cap), seeds, training=False)
    reference = AtariVectorEnv(game, n, autoreset_mode="SameStep", max_num_frames_per_episode=10**7,
                               reward_clipping=False, use_fire_reset=False, noop_max=30, repeat_action_probability=0.0)
    obs = env.reset()
    ref_obs, _ = reference.reset(seed=np.array([ale_seed(w) for w in seeds]))
    assert np.array_equal(obs, ref_obs)
    actions = np.random.default_rng(0).integers(0, env.num_actions, size=(cap // 4 + 5, n))
    steps = cap // 4
    for t in range(steps):
        out = env.step(actions[t])
        ref_obs, _, ref_term, _, _ = reference.step(actions[t].astype(np.int64))
        if t < steps - 1:
            assert not out.episode_end[~ref_term].any() and np.array_equal(out.obs[~ref_term], ref_obs[~ref_term])
    capped = out.episode_end & ~out.terminal & ~ref_term   # truncated here (not ended by the game)
    assert capped.all() or capped.sum() >= 1
    for e in np.flatnonzero(capped):
        assert np.array_equal(out.final_obs[e], ref_obs[e]), f"env {e}: final observation differs from the emulator's"
        assert not np.array_equal(out.obs[e], ref_obs[e])   # the env was reset: a new episode starts


@pytest.mark.slow
def test_noop_starts_draw_0_to_29_as_the_papers_code():
    """ale-py's noop_max=30 draws 0-29 no-ops, as the paper's code (random.randrange(30)) does."""
    from ale_py.vector_env import AtariVectorEnv
    env = AtariVectorEnv("pong", 128, noop_max=30, repeat_action_probability=0.0, use_fire_reset=False)
    _, info = env.reset(seed=np.arange(128))
    noops = np.asarray(info["episode_frame_number"])
    assert noops.min() >= 0 and noops.max() <= 29 and len(set(noops.tolist())) >= 20
