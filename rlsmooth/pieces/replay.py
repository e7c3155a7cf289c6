"""Uniform experience replay that stores every frame once and rebuilds stacks at sample time.

Layout: one circular track per environment.  Slot ``j`` of a track holds the newest frame
(``frame_channels`` channels) of observation o_j and, once the agent has acted on it, the
transition taken from it: action, reward, ``terminal`` (no bootstrap) and ``episode_end``.
After an episode ends, the ended episode's final observation gets a slot of its own (it has no
action, so it is never sampled as a start) and the next episode's first frame follows it, marked
``first``.  Stacks are rebuilt from the ``stack`` newest frames and zero-filled before ``first``
(ale-py zero-fills at reset too, so the agent acts on exactly the states that are replayed).

Memory for 1M Atari transitions: 1M x 84 x 84 B = 7.06 GB of frames plus ~10 B per slot of
metadata, against 28 GB for a buffer that stores every stacked state.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    obs: torch.Tensor        # (B, stack*C, H, W) uint8
    action: torch.Tensor     # (B,) int64
    reward: torch.Tensor     # (B,) float32, discounted n-step return sum_{i<k} gamma^i r_i
    discount: torch.Tensor   # (B,) float32, gamma^k, or 0 where the k-th transition was terminal
    next_obs: torch.Tensor   # (B, stack*C, H, W) uint8


class FrameReplay:
    def __init__(self, capacity: int, num_envs: int, frame_shape: tuple[int, ...], stack: int = 1,
                 n_step: int = 1, gamma: float = 0.99, seed: int = 0):
        if capacity < num_envs * (stack + n_step + 2):
            raise ValueError(f"replay capacity {capacity} too small for {num_envs} envs")
        self.num_envs = num_envs
        self.track = capacity // num_envs            # slots per env
        self.frame_shape = tuple(frame_shape)        # (C, H, W) of one frame
        self.stack = stack
        self.n_step = n_step
        self.gamma = gamma
        n, t = num_envs, self.track
        self.frames = np.zeros((n, t, *self.frame_shape), np.uint8)
        self.action = np.zeros((n, t), np.int32)
        self.reward = np.zeros((n, t), np.float32)
        self.terminal = np.zeros((n, t), bool)
        self.episode_end = np.zeros((n, t), bool)
        self.first = np.zeros((n, t), bool)
        self.acted = np.zeros((n, t), bool)          # slot holds a transition
        self.written = np.zeros(n, np.int64)         # absolute slots written per env (monotone)
        self.rng = np.random.default_rng(seed)
        self._env_index = np.arange(n)

    # -- writing ---------------------------------------------------------------------------
    def _write_frame(self, envs: np.ndarray, frames: np.ndarray, first: bool) -> None:
        slot = self.written[envs] % self.track
        self.frames[envs, slot] = frames
        self.first[envs, slot] = first
        self.acted[envs, slot] = False
        self.terminal[envs, slot] = False
        self.episode_end[envs, slot] = False
        self.written[envs] += 1

    def start(self, frames: np.ndarray) -> None:
        """Record the first frames (N, C, H, W) after a reset."""
        self._write_frame(self._env_index, frames, first=True)

    def add(self, action: np.ndarray, reward: np.ndarray, terminal: np.ndarray, episode_end: np.ndarray,
            next_frames: np.ndarray, final_frames: np.ndarray) -> None:
        """Record one vector step: the transition from the pending frame and the frames that follow."""
        envs = self._env_index
        slot = (self.written - 1) % self.track
        self.action[envs, slot] = action
        self.reward[envs, slot] = reward
        self.terminal[envs, slot] = terminal
        self.episode_end[envs, slot] = episode_end
        self.acted[envs, slot] = True
        ended = np.flatnonzero(episode_end)
        if ended.size:
            self._write_frame(ended, final_frames[ended], first=False)
            self._write_frame(ended, next_frames[ended], first=True)
            going = np.flatnonzero(~episode_end)
            if going.size:
                self._write_frame(going, next_frames[going], first=False)
        else:
            self._write_frame(envs, next_frames, first=False)

    # -- sampling --------------------------------------------------------------------------
    def _sample_starts(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        lo = np.maximum(self.written - self.track + self.stack, 0)   # history frames still stored
        hi = self.written - 1 - self.n_step                           # n-step successors written
        counts = np.maximum(hi - lo + 1, 0)
        if counts.sum() <= 0:
            raise RuntimeError("replay holds no complete transition yet")
        envs_out, pos_out, have = [], [], 0
        while have < batch_size:
            want = 2 * (batch_size - have) + 8
            envs = self.rng.choice(self.num_envs, size=want, p=counts / counts.sum())
            pos = lo[envs] + (self.rng.random(want) * counts[envs]).astype(np.int64)
            ok = self.acted[envs, pos % self.track]
            envs, pos = envs[ok], pos[ok]
            envs_out.append(envs)
            pos_out.append(pos)
            have += len(envs)
        return np.concatenate(envs_out)[:batch_size], np.concatenate(pos_out)[:batch_size]

    def _stacks(self, envs: np.ndarray, pos: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stacked observations ending at ``pos`` and at ``pos + k``, zero before an episode's first frame.

        Both stacks come from one gather of the window pos - stack + 1 ... pos + n_step (they share
        stack - k frames), and the zero-fill multiply runs only when a stack crosses an episode start.
        """
        s, b = self.stack, len(pos)
        window = np.arange(-(s - 1), self.n_step + 1)                   # oldest obs frame ... pos + n
        slots = (pos[:, None] + window[None, :]) % self.track            # (B, s + n)
        e = envs[:, None]
        frames = self.frames[e, slots]                                   # (B, s + n, C, H, W): the one gather
        first = self.first[e, slots]
        if (k == self.n_step).all():                                     # the common case: plain slices
            start_next = np.full(b, self.n_step)
            obs, nxt = frames[:, :s], frames[:, self.n_step:self.n_step + s]
        else:
            start_next = k
            index = k[:, None] + np.arange(s)[None, :]
            obs, nxt = frames[:, :s], np.take_along_axis(frames, index[:, :, None, None, None], 1)
        stacks = []
        for start, stack in ((np.zeros(b, np.int64), obs), (start_next, nxt)):
            if s > 1:
                starts = np.take_along_axis(first, start[:, None] + np.arange(s)[None, :], 1)   # (B, s)
                # a frame is kept if no newer frame in its stack starts the episode
                newer_first = np.flip(np.cumsum(np.flip(starts, 1), 1), 1) - starts
                keep = newer_first == 0
                if not keep.all():
                    stack = stack * keep[..., None, None, None].astype(np.uint8)
            stacks.append(np.ascontiguousarray(stack).reshape(b, s * self.frame_shape[0], *self.frame_shape[1:]))
        return stacks[0], stacks[1]

    def sample_arrays(self, batch_size: int) -> tuple[np.ndarray, ...]:
        envs, pos = self._sample_starts(batch_size)
        steps = pos[:, None] + np.arange(self.n_step)[None, :]        # (B, n)
        slots = steps % self.track
        e = envs[:, None]
        rewards = self.reward[e, slots]
        stop = self.terminal[e, slots] | self.episode_end[e, slots]
        # k = transitions used: up to and including the first stop, at most n
        stopped_before = np.cumsum(stop, 1) - stop > 0
        used = ~stopped_before
        k = used.sum(1)
        discounts_i = self.gamma ** np.arange(self.n_step, dtype=np.float64)
        reward = (rewards * used * discounts_i[None, :]).sum(1).astype(np.float32)
        last_slot = (pos + k - 1) % self.track
        terminal = self.terminal[envs, last_slot]
        discount = np.where(terminal, 0.0, self.gamma ** k).astype(np.float32)
        obs, next_obs = self._stacks(envs, pos, k)
        action = self.action[envs, pos % self.track].astype(np.int64)
        return obs, action, reward, discount, next_obs

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> Batch:
        obs, action, reward, discount, next_obs = self.sample_arrays(batch_size)
        device = torch.device(device)
        pin = device.type == "cuda"

        def to(x: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(x)
            return (t.pin_memory() if pin else t).to(device, non_blocking=pin)

        return Batch(to(obs), to(action), to(reward), to(discount), to(next_obs))

    # -- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        arrays = ("frames", "action", "reward", "terminal", "episode_end", "first", "acted", "written")
        state = {name: torch.from_numpy(getattr(self, name)) for name in arrays}
        state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in ("frames", "action", "reward", "terminal", "episode_end", "first", "acted", "written"):
            value = state[name].numpy()
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"replay '{name}' has shape {value.shape}, expected {getattr(self, name).shape}")
            setattr(self, name, value.copy())
        self.rng.bit_generator.state = state["rng"]

    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in (self.frames, self.action, self.reward, self.terminal,
                                      self.episode_end, self.first, self.acted))
