"""Every random stream of a run, derived from one ``numpy.random.SeedSequence(seed)``.

A stream is named by a fixed spawn key below the run's seed: ``(TRAIN_ENV, restart, i)`` for
training env ``i``, ``(EVAL_ENV, i)`` for evaluation env ``i``, and so on.  SeedSequence hashes
(seed, key) together, so two runs with different seeds share no stream at any number of envs,
and within a run no two envs share one (consecutive integers, as ``reset(seed=s)`` gives, would
make the env streams of seed s and seed s+1 overlap in all but one env).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

# spawn-key heads: one per kind of stream (never reorder: that would change every run's streams)
TRAIN_ENV, EVAL_ENV, INIT, POLICY, REPLAY, EVAL_POLICY, PYTHON, EVAL_CLI = range(8)
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class SeedStreams:
    seed: int

    def sequence(self, *key: int) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.seed, spawn_key=tuple(int(k) for k in key))

    def generator(self, *key: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(self.sequence(*key)))

    def env_seeds(self, kind: int, num_envs: int, *key: int) -> list[np.ndarray]:
        """One 128-bit seed (4 uint32 words) per env; ``key`` distinguishes restarts of the same envs."""
        return [self.sequence(kind, *key, i).generate_state(4) for i in range(num_envs)]

    def torch_seed(self, *key: int) -> int:
        return int(self.sequence(*key).generate_state(1, np.uint64)[0] >> np.uint64(1))

    def seed_globals(self) -> None:
        """Seed torch (network init, sampling in torch) and Python's ``random`` from their own streams."""
        torch.manual_seed(self.torch_seed(INIT))
        random.seed(int(self.sequence(PYTHON).generate_state(1, np.uint64)[0]))


def ale_seed(words: np.ndarray) -> int:
    """A non-negative 31-bit ALE seed from an env's seed words."""
    return int(np.uint64(words[0]) << np.uint64(32) | np.uint64(words[1])) % (2**31 - 1)
