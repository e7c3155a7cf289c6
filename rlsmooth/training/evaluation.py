"""Evaluation phases on separate envs: full episodes and raw game scores."""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
from tqdm import tqdm

from rlsmooth.pieces.envs import VecEnv
from rlsmooth.pieces.scores import human_normalized


class EvalResult(NamedTuple):
    returns: list[float]
    lengths: list[int]
    states: np.ndarray   # up to ``keep_states`` observations seen, spread over the phase


def evaluate(env: VecEnv, policy: Callable[[np.ndarray], np.ndarray], steps: int, episodes: int = 0,
             keep_states: int = 256, progress: bool = False) -> EvalResult:
    """Run ``policy`` for ``steps`` agent steps, or until ``episodes`` (> 0) whole episodes are counted.

    Episodes still running at the end are not counted, so every return is a whole episode.  With
    ``episodes``, env ``i`` of N contributes exactly ``(episodes + i) // N`` of them: counting the
    first episodes to end across the envs would favour short episodes (in Pong, the games lost
    fastest).  ``progress`` shows a bar that is cleared when the phase ends.
    """
    quota = np.array([(episodes + i) // env.num_envs for i in range(env.num_envs)]) if episodes else None
    counted = np.zeros(env.num_envs, np.int64)
    bar = tqdm(total=episodes or steps, unit="episode" if episodes else "step", desc="evaluating", leave=False,
               disable=not progress)
    obs = env.reset()
    running = np.zeros(env.num_envs)
    length = np.zeros(env.num_envs, np.int64)
    returns: list[float] = []
    lengths: list[int] = []
    limit = steps * 100 if episodes else steps
    taken = 0
    states: list[np.ndarray] = []
    every = max(1, steps // max(keep_states, 1))
    while taken < limit and not (episodes and (counted >= quota).all()):
        if keep_states and (taken // env.num_envs) % max(1, every // env.num_envs) == 0 and len(states) < keep_states:
            states.append(obs[: keep_states - len(states)].copy())
        step = env.step(policy(obs))
        running += step.raw_reward
        length += 1
        for i in np.flatnonzero(step.episode_end):
            if quota is None or counted[i] < quota[i]:
                returns.append(float(running[i]))
                lengths.append(int(length[i]))
                counted[i] += 1
            running[i] = 0.0
            length[i] = 0
        obs = step.obs
        taken += env.num_envs
        bar.update(int(counted.sum()) - bar.n if episodes else env.num_envs)
    bar.close()
    kept = np.concatenate(states) if states else np.zeros((0, *env.obs_shape), env.obs_dtype)
    return EvalResult(returns, lengths, kept)


def eval_metrics(result: EvalResult, suite: str, game: str) -> dict[str, float]:
    if not result.returns:
        return {"eval/episodes": 0.0}
    mean = float(np.mean(result.returns))
    metrics = {"eval/episode_return": mean, "eval/episode_return_std": float(np.std(result.returns)),
               "eval/episode_length": float(np.mean(result.lengths)), "eval/episodes": float(len(result.returns))}
    if suite == "atari" and not math.isnan(human_normalized(game, mean)):
        metrics["eval/human_normalized"] = human_normalized(game, mean)
    return metrics
