"""Any registered Gymnasium env with a Box observation and Discrete actions (``env.suite: gym``),
behind the same vectorised interface as the Atari and MinAtar envs.

The observation is flattened to D float32 values and shaped (D, 1, 1), so the replay, the agents
and the MLP torso (``fc1`` ... ``out``) take it unchanged.  ``terminated`` is terminal;
``truncated`` (a TimeLimit, e.g. CartPole-v1's 500 steps) ends the episode and is bootstrapped
through.  Each env is seeded at its first reset from its own seed words; later resets continue
the env's own random stream.
"""
from __future__ import annotations

import difflib

import numpy as np

from rlsmooth.config.sections import EnvConfig
from rlsmooth.errors import ConfigError
from rlsmooth.pieces.env_step import FreshEpisodesOnResume, InProcessStepping, Step, training_reward
from rlsmooth.pieces.seeding import ale_seed


def check_gym_env(cfg: EnvConfig) -> None:
    """ConfigError with one line for an id Gymnasium does not know, or spaces the agents cannot take."""
    import gymnasium as gym
    if cfg.game not in gym.registry:
        close = difflib.get_close_matches(cfg.game, list(gym.registry), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else " (a registered Gymnasium id, e.g. CartPole-v1)"
        raise ConfigError(f"unknown gym env {cfg.game!r}{hint}")   # repr: an id with hidden characters shows them


class GymVecEnv(InProcessStepping, FreshEpisodesOnResume):
    """N Gymnasium envs stepped in turn in this process."""

    obs_dtype = np.float32

    def __init__(self, cfg: EnvConfig, num_envs: int, seeds: list[np.ndarray], training: bool):
        import gymnasium as gym
        check_gym_env(cfg)
        try:
            self._envs = [gym.make(cfg.game) for _ in range(num_envs)]
        except Exception as exc:   # a registered id whose package is missing, or that needs arguments
            raise ConfigError(f"gym env '{cfg.game}' cannot be made ({type(exc).__name__}: {exc})") from None
        space, actions = self._envs[0].observation_space, self._envs[0].action_space
        if not isinstance(space, gym.spaces.Box) or not isinstance(actions, gym.spaces.Discrete):
            raise ConfigError(f"gym env '{cfg.game}' has {type(space).__name__} observations and "
                              f"{type(actions).__name__} actions; env.suite gym takes Box and Discrete")
        self.num_envs = num_envs
        self.clip_rewards = training and cfg.clip_rewards
        self.num_actions = int(actions.n)
        self.obs_shape = (int(np.prod(space.shape)), 1, 1)
        self.frame_channels = self.obs_shape[0]
        self._seeds: list[int] | None = [ale_seed(w) for w in seeds]

    def _shape(self, obs) -> np.ndarray:
        return np.asarray(obs, np.float32).reshape(self.obs_shape)

    def reset(self) -> np.ndarray:
        seeds = self._seeds or [None] * self.num_envs   # None after the first reset: streams go on
        self._seeds = None
        return np.stack([self._shape(env.reset(seed=s)[0]) for env, s in zip(self._envs, seeds)])

    def step(self, actions: np.ndarray) -> Step:
        n = self.num_envs
        obs = np.empty((n, *self.obs_shape), np.float32)
        reward = np.zeros(n, np.float32)
        terminal = np.zeros(n, bool)
        episode_end = np.zeros(n, bool)
        for i, (env, a) in enumerate(zip(self._envs, actions.tolist())):
            o, r, terminated, truncated, _ = env.step(a)
            obs[i], reward[i], terminal[i], episode_end[i] = self._shape(o), r, terminated, terminated or truncated
        final_obs = obs
        if episode_end.any():
            final_obs = obs.copy()
            for i in np.flatnonzero(episode_end):
                obs[i] = self._shape(self._envs[i].reset()[0])
        return Step(obs, training_reward(reward, self.clip_rewards), reward, terminal, episode_end, final_obs)

    def close(self) -> None:
        for env in self._envs:
            env.close()
