"""What a run accumulates between log lines: the training envs' episodes and per-update means.

Both are part of the checkpoint, so a resumed run writes the same log lines as an uninterrupted one.
"""
from __future__ import annotations

import numpy as np
import torch

from rlsmooth.pieces.env_step import Step


class EpisodeStats:
    """Running returns and lengths of the N training envs, and the episodes finished since the last log."""

    def __init__(self, num_envs: int):
        self.ret = np.zeros(num_envs)
        self.length = np.zeros(num_envs, np.int64)
        self.finished: list[tuple[float, int]] = []

    def record(self, step: Step) -> None:
        self.ret += step.raw_reward
        self.length += 1
        for i in np.flatnonzero(step.episode_end):
            self.finished.append((float(self.ret[i]), int(self.length[i])))
            self.ret[i], self.length[i] = 0.0, 0

    def pop_metrics(self) -> dict[str, float]:
        if not self.finished:
            return {}
        returns, lengths = zip(*self.finished)
        self.finished.clear()
        return {"train/episode_return": float(np.mean(returns)), "train/episode_length": float(np.mean(lengths)),
                "train/episodes": len(returns)}

    def state_dict(self) -> dict:
        return {"ret": self.ret.tolist(), "length": self.length.tolist(), "finished": list(self.finished)}

    def load_state_dict(self, state: dict) -> None:
        self.ret = np.asarray(state["ret"], np.float64)
        self.length = np.asarray(state["length"], np.int64)
        self.finished = [(float(r), int(n)) for r, n in state["finished"]]


class MeanWindow:
    """Sums of per-update tensors (losses ...) over a logging window; one host sync when read."""

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, torch.zeros((), device=self.device)) + value.detach()
        self.count += 1

    def pop_means(self) -> dict[str, float]:
        if not self.count:
            return {}
        means = torch.stack(list(self.sums.values())).cpu() / self.count
        out = dict(zip(self.sums, means.tolist()))
        self.sums, self.count = {}, 0
        return out

    def state_dict(self) -> dict:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self.count = int(state["count"])
