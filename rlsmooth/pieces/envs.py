"""Vectorised environments with one interface for Atari (ale-py), MinAtar, any Gymnasium env with
Box observations (:mod:`rlsmooth.pieces.gym_env`) and a tiny test env.

Every env auto-resets in the same step ("same-step" autoreset): ``step`` returns the first
observation of the next episode for envs whose episode ended, and the last observation of the
ended episode in ``final_obs``.  Two kinds of ending are kept apart:

* ``terminal``    -- no bootstrapping from the next state (game over, or a lost life under the
                     paper protocol's training envs);
* ``episode_end`` -- the episode stops here (game over *or* time-limit truncation); frame stacks
                     never cross it.  A truncation is an ``episode_end`` that is not ``terminal``,
                     so learners bootstrap through it from ``final_obs``.

``reward`` is what the learner sees (clipped to [-1, 1] in training envs when ``env.clip_rewards``,
under either Atari protocol) and ``raw_reward`` is the game score used for every reported return.

Each env gets its own seed (``seeds[i]``: seed words from :mod:`rlsmooth.pieces.seeding`), used at the
first reset; later resets continue the env's own random stream.
"""
from __future__ import annotations

import difflib
import numpy as np

from rlsmooth.config.sections import EnvConfig
from rlsmooth.errors import ConfigError
from rlsmooth.pieces.env_step import FreshEpisodesOnResume, InProcessStepping, Step, training_reward
from rlsmooth.pieces.seeding import ale_seed

MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
TEST_GAMES = ("chain",)


def _unknown_game(suite: str, game: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(game, valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid: {', '.join(valid)}"
    return ConfigError(f"unknown {suite} game {game!r}{hint}")   # repr: hidden characters show


def atari_games() -> list[str]:
    from ale_py import roms
    return sorted(roms.get_all_rom_ids())


def check_game(cfg: EnvConfig) -> None:
    """Raise ConfigError for an unknown game id, listing close matches."""
    if cfg.suite == "gym":
        from rlsmooth.pieces.gym_env import check_gym_env
        return check_gym_env(cfg)
    valid = {"atari": atari_games, "minatar": lambda: list(MINATAR_GAMES), "test": lambda: list(TEST_GAMES)}[cfg.suite]()
    if cfg.game not in valid:
        raise _unknown_game(cfg.suite, cfg.game, valid)


def ale_options(cfg: EnvConfig, max_steps: int, colour: bool = False) -> dict:
    """ale-py vector env options of the protocol; ``colour``: full-size RGB frames, one per step
    (for videos: the same games, seeds and actions, so the same episodes, seen in colour)."""
    paper = cfg.protocol == "paper"
    image = ({"stack_num": 1, "maxpool": False, "img_height": 210, "img_width": 160, "grayscale": False} if colour else
             {"stack_num": cfg.frame_stack, "maxpool": True, "img_height": 84, "img_width": 84, "grayscale": True})
    return dict(
        autoreset_mode="SameStep",
        max_num_frames_per_episode=(max_steps + 1) * cfg.frame_skip,   # never reached: the cap is ours
        repeat_action_probability=0.0 if paper else 0.25,
        noop_max=30 if paper else 0,
        frameskip=cfg.frame_skip,
        **image,
        # Life loss and clipping are applied by AtariVecEnv, so that raw scores stay visible.
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=False,
        use_fire_reset=cfg.fire_reset,
    )


class AtariVecEnv(FreshEpisodesOnResume):
    """N ALE games stepped in C++ threads (``ale_py.vector_env.AtariVectorEnv``).

    The frame cap is applied here, on a step boundary: an episode is truncated after the first
    agent step at which it has run ``max_episode_frames`` frames (no-op starts not counted, as
    ale-py counts them), and that env alone is reset.  ale-py's own cap is set beyond ours, because
    when it cuts an episode (ale-py 0.11 and 0.12 at least) the final observation's newest frame is
    wrong: the step loop stops before the last frame is captured and max-pooled.
    """

    obs_dtype = np.uint8

    def __init__(self, cfg: EnvConfig, num_envs: int, seeds: list[np.ndarray], training: bool):
        from ale_py.vector_env import AtariVectorEnv

        check_game(cfg)
        self.num_envs = num_envs
        self.frame_channels = 1
        self.clip_rewards = training and cfg.clip_rewards
        self.life_loss_terminal = training and cfg.protocol == "paper"
        self._seeds: np.ndarray | None = np.array([ale_seed(w) for w in seeds], dtype=np.int64)
        self.max_steps = -(-cfg.max_episode_frames // cfg.frame_skip)   # agent steps per episode, rounded up
        self._steps = np.zeros(num_envs, np.int64)                       # agent steps into each episode
        self._env = AtariVectorEnv(cfg.game, num_envs, **ale_options(cfg, self.max_steps))
        self.num_actions = int(self._env.single_action_space.n)
        self.obs_shape = tuple(self._env.single_observation_space.shape)
        self._lives = np.zeros(num_envs, dtype=np.int64)

    def reset(self) -> np.ndarray:
        obs, info = self._env.reset(seed=self._seeds)   # None after the first reset: streams go on
        self._seeds = None
        self._lives = np.asarray(info["lives"], dtype=np.int64).copy()
        self._steps[:] = 0
        return obs

    def send(self, actions: np.ndarray) -> None:
        """Start stepping in ale-py's C++ threads; the caller may work until ``recv``."""
        self._env.send(actions.astype(np.int64, copy=False))

    def step(self, actions: np.ndarray) -> Step:
        self.send(actions)
        return self.recv()

    def recv(self) -> Step:
        obs, reward, terminated, truncated, info = self._env.recv()
        raw = np.asarray(reward, dtype=np.float32)
        lives = np.asarray(info["lives"], dtype=np.int64).copy()
        final_obs = info["final_obs"] if "final_obs" in info else obs
        self._steps += 1
        capped = (self._steps >= self.max_steps) & ~(terminated | truncated)
        if capped.any():   # truncate at this step boundary: the observation is whole; reset these envs alone
            final_obs = final_obs.copy()
            final_obs[capped] = obs[capped]
            fresh, fresh_info = self._env.reset(options={"reset_mask": capped})
            obs = obs.copy()
            obs[capped] = fresh[capped]
            lives[capped] = np.asarray(fresh_info["lives"])[capped]
        episode_end = terminated | truncated | capped
        terminal = terminated.copy()
        if self.life_loss_terminal:
            terminal |= (lives < self._lives) & ~episode_end
        self._lives = lives
        self._steps[episode_end] = 0
        return Step(obs, training_reward(raw, self.clip_rewards), raw, terminal, episode_end, final_obs)

    def close(self) -> None:
        self._env.close()


class MinAtarVecEnv(InProcessStepping, FreshEpisodesOnResume):
    """N MinAtar games stepped in Python (each is a 10x10xC binary grid, no frame stack)."""

    obs_dtype = np.uint8

    def __init__(self, cfg: EnvConfig, num_envs: int, seeds: list[np.ndarray], training: bool):
        check_game(cfg)
        from minatar import Environment

        self.num_envs = num_envs
        self.clip_rewards = training and cfg.clip_rewards
        self._envs = []
        for words in seeds:
            env = Environment(cfg.game, sticky_action_prob=cfg.minatar_sticky_prob)
            env.seed(words)   # RandomState takes the 128-bit seed as four uint32 words
            self._envs.append(env)
        h, w, c = self._envs[0].state_shape()
        self.obs_shape = (c, h, w)
        self.frame_channels = c
        self.num_actions = self._envs[0].num_actions()

    def _obs(self, env) -> np.ndarray:
        return np.ascontiguousarray(env.state().transpose(2, 0, 1), dtype=np.uint8)

    def reset(self) -> np.ndarray:
        for env in self._envs:
            env.reset()
        return np.stack([self._obs(env) for env in self._envs])

    def step(self, actions: np.ndarray) -> Step:
        n = self.num_envs
        reward = np.zeros(n, np.float32)
        done = np.zeros(n, bool)
        obs = np.empty((n, *self.obs_shape), np.uint8)
        final_obs = obs
        for i, (env, a) in enumerate(zip(self._envs, actions.tolist())):
            r, d = env.act(a)
            reward[i], done[i] = r, d
            obs[i] = self._obs(env)
        if done.any():
            final_obs = obs.copy()
            for i in np.flatnonzero(done):
                self._envs[i].reset()
                obs[i] = self._obs(self._envs[i])
        return Step(obs, training_reward(reward, self.clip_rewards), reward, done, done.copy(), final_obs)

    def close(self) -> None:
        pass


class ChainVecEnv(InProcessStepping):
    """Deterministic corridor for tests: start at cell 0, actions 0=left, 1=right.

    Reaching the last cell gives +1 and terminates; every other step costs -0.01; episodes are
    truncated after ``max_steps``.  The observation is a one-hot of the cell on a 1x``length``
    grid, padded into a (1, 10, 10) image so the MinAtar network applies unchanged.
    """

    length = 6
    max_steps = 20
    obs_dtype = np.uint8

    def __init__(self, cfg: EnvConfig, num_envs: int, seeds: list[np.ndarray], training: bool):
        check_game(cfg)   # deterministic: the seeds are not used
        self.num_envs = num_envs
        self.num_actions = 2
        self.obs_shape = (1, 10, 10)
        self.frame_channels = 1
        self._pos = np.zeros(num_envs, np.int64)
        self._t = np.zeros(num_envs, np.int64)

    def _obs(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, *self.obs_shape), np.uint8)
        obs[np.arange(self.num_envs), 0, 0, self._pos] = 1
        return obs

    def reset(self) -> np.ndarray:
        self._pos[:] = 0
        self._t[:] = 0
        return self._obs()

    def step(self, actions: np.ndarray) -> Step:
        move = np.where(actions == 1, 1, -1)
        self._pos = np.clip(self._pos + move, 0, self.length - 1)
        self._t += 1
        terminal = self._pos == self.length - 1
        truncated = (self._t >= self.max_steps) & ~terminal
        reward = np.where(terminal, 1.0, -0.01).astype(np.float32)
        episode_end = terminal | truncated
        final_obs = self._obs()
        self._pos[episode_end] = 0
        self._t[episode_end] = 0
        return Step(self._obs(), reward, reward, terminal, episode_end, final_obs)

    def state_dict(self) -> dict:
        return {"pos": self._pos.tolist(), "t": self._t.tolist()}  # plain ints: weights_only-safe

    def load_state_dict(self, state: dict) -> bool:
        self._pos = np.asarray(state["pos"], np.int64)
        self._t = np.asarray(state["t"], np.int64)
        return True

    def close(self) -> None:
        pass


VecEnv = "AtariVecEnv | MinAtarVecEnv | ChainVecEnv | rlsmooth.pieces.gym_env.GymVecEnv"


def make_vec_env(cfg: EnvConfig, seeds: list[np.ndarray], training: bool) -> VecEnv:
    """One env per seed. Training envs (``training=True``) apply reward clipping (``env.clip_rewards``)
    and, under the paper protocol, the life-loss terminal."""
    if cfg.suite == "gym":   # gymnasium is imported only when a gym env is asked for
        from rlsmooth.pieces.gym_env import GymVecEnv
        return GymVecEnv(cfg, len(seeds), seeds, training)
    cls = {"atari": AtariVecEnv, "minatar": MinAtarVecEnv, "test": ChainVecEnv}[cfg.suite]
    return cls(cfg, len(seeds), seeds, training)
