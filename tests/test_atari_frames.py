"""The Atari observations checked frame by frame against the emulator itself, and the replay's
stacks checked against the env's own stacks on real games.

The reference preprocessing is written here from the DQN paper's description, independently of
ale-py's C++ vector env: step the raw ALE ``frame_skip`` times with one action, max-pool the last
two grey screens, average each 84x84 cell over the source area it covers, stack the newest four.
"""
import hashlib

import numpy as np
import pytest

from rlsmooth.config.sections import EnvConfig
from rlsmooth.pieces.envs import ale_options, make_vec_env
from rlsmooth.pieces.replay import FrameReplay
from rlsmooth.pieces.seeding import TRAIN_ENV, SeedStreams


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): row i averages the source interval [i, i+1) * n_in / n_out, by overlap."""
    scale = n_in / n_out
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), int(np.ceil(hi))):
            weights[i, j] = min(hi, j + 1) - max(lo, j)
    return weights / scale


class ReferenceAtari:
    """One raw ALE game with the paper's preprocessing, in numpy."""

    def __init__(self, game: str, cfg: EnvConfig):
        import ale_py
        self.ale = ale_py.ALEInterface()
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.setInt("frame_skip", 1)
        self.ale.loadROM(ale_py.roms.get_rom_path(game))
        self.actions = self.ale.getMinimalActionSet()
        self.cfg = cfg
        screen = self.ale.getScreenGrayscale()
        self.rows, self.cols = area_weights(screen.shape[0], 84), area_weights(screen.shape[1], 84)

    def process(self, older: np.ndarray, newer: np.ndarray) -> np.ndarray:
        pooled = np.maximum(older, newer).astype(np.float64)
        return np.floor(self.rows @ pooled @ self.cols.T + 0.5).astype(np.uint8)

    def reset(self) -> np.ndarray:
        self.ale.reset_game()
        screen = self.ale.getScreenGrayscale()
        self.stack = [np.zeros((84, 84), np.uint8)] * (self.cfg.frame_stack - 1) + [self.process(screen, screen)]
        return np.stack(self.stack)

    def step(self, action: int) -> tuple[np.ndarray, float]:
        reward, screens = 0.0, []
        for _ in range(self.cfg.frame_skip):
            reward += self.ale.act(self.actions[action])
            screens.append(self.ale.getScreenGrayscale())
        self.stack = self.stack[1:] + [self.process(screens[-2], screens[-1])]
        return np.stack(self.stack), reward


@pytest.mark.parametrize("game", ["pong", "breakout"])
def test_observations_are_the_emulators_last_two_frames_pooled_resized_and_stacked(game):
    from ale_py.vector_env import AtariVectorEnv
    cfg = EnvConfig(suite="atari", game=game, protocol="paper")
    # the protocol's options, without the random no-op starts, so both sides play the same game
    options = {**ale_options(cfg, max_steps=10_000), "noop_max": 0}
    env = AtariVectorEnv(game, 1, **options)
    reference = ReferenceAtari(game, cfg)
    obs, _ = env.reset(seed=np.array([5]))
    expected = reference.reset()
    assert obs.shape == (1, 4, 84, 84)
    assert np.abs(obs[0].astype(int) - expected).max() <= 1
    rng = np.random.default_rng(0)
    worst, changed, compared = 0, 0, 0
    for _ in range(300):
        action = int(rng.integers(len(reference.actions)))
        obs, reward, terminated, truncated, _ = env.step(np.array([action]))
        if terminated.any():      # game over: the vector env resets, the reference would not
            break
        expected, expected_reward = reference.step(action)
        compared += 1
        assert float(reward[0]) == expected_reward            # raw score: clipping is ours, later
        diff = np.abs(obs[0].astype(int) - expected)
        worst = max(worst, int(diff.max()))                   # rounding of the area average only
        changed += int(not np.array_equal(expected[-1], expected[-2]))
    env.close()
    assert worst <= 1
    assert compared >= 150 and changed > 100      # the game moved: the check compared moving frames, not a still screen


def digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_replay_rebuilds_the_envs_own_stacks_on_real_games():
    """Every sampled transition is one the env produced: the stack before, the action, the clipped
    reward, the discount (0 after a lost life or a game over) and the stack after; at an episode's
    end the one after is the last stack of that episode, not the reset that followed."""
    cfg = EnvConfig(suite="atari", game="breakout", protocol="paper")
    n, steps, gamma = 2, 700, 0.99
    env = make_vec_env(cfg, SeedStreams(3).env_seeds(TRAIN_ENV, n), training=True)
    replay = FrameReplay(capacity=n * (steps + 10), num_envs=n, frame_shape=(1, 84, 84), stack=4, gamma=gamma)
    obs = env.reset()
    replay.start(obs[:, -1:])
    produced, ends, life_losses = set(), 0, 0
    rng = np.random.default_rng(1)
    for _ in range(steps):
        actions = rng.integers(0, env.num_actions, n)
        out = env.step(actions)
        replay.add(actions, out.reward, out.terminal, out.episode_end, out.obs[:, -1:], out.final_obs[:, -1:])
        for e in range(n):
            after = out.final_obs[e] if out.episode_end[e] else out.obs[e]
            discount = 0.0 if out.terminal[e] else gamma
            produced.add((digest(obs[e]), int(actions[e]), float(out.reward[e]), discount, digest(after)))
        ends += int(out.episode_end.sum())
        life_losses += int((out.terminal & ~out.episode_end).sum())
        obs = out.obs
    env.close()
    assert ends >= 1 and life_losses >= 1     # the check crossed both kinds of boundary
    batch_obs, action, reward, discount, next_obs = replay.sample_arrays(4000)
    sampled = {(digest(batch_obs[i]), int(action[i]), float(reward[i]), float(np.float32(discount[i])), digest(next_obs[i]))
               for i in range(len(action))}
    produced = {(o, a, r, float(np.float32(d)), x) for o, a, r, d, x in produced}
    assert sampled <= produced
    assert len(sampled) > 0.8 * len(produced)
