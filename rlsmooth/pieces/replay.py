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

Frames live on the host (default) or on the training device (``storage="device"``: MinAtar
always fits, Atari's 7 GB on a large GPU); the metadata and the sampling stay on the host.  A
batch gathers each sampled window (the ``stack + n`` frames that obs and next_obs share) once:
on the host straight into pinned staging buffers that are allocated once and alternate, so the
copy to a GPU is asynchronous; on the device with one ``index_select``.
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
                 n_step: int = 1, gamma: float = 0.99, seed: int = 0, storage: torch.device | str | None = None):
        if capacity < num_envs * (stack + n_step + 2):
            raise ValueError(f"replay capacity {capacity} too small for {num_envs} envs")
        self.num_envs = num_envs
        self.track = capacity // num_envs            # slots per env
        self.frame_shape = tuple(frame_shape)        # (C, H, W) of one frame
        self.stack = stack
        self.n_step = n_step
        self.gamma = gamma
        n, t = num_envs, self.track
        self.storage = torch.device(storage) if storage is not None else None   # None: host numpy frames
        if self.storage is None:
            self.frames = np.zeros((n, t, *self.frame_shape), np.uint8)
        else:
            self.frames = torch.zeros((n, t, *self.frame_shape), dtype=torch.uint8, device=self.storage)
        self._staging: list[tuple] = []   # pinned (frames, action, reward+discount) buffers and their events
        self._turn = 0
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
        if self.storage is None:
            self.frames[envs, slot] = frames
        else:
            self.frames[torch.from_numpy(envs).to(self.storage), torch.from_numpy(slot).to(self.storage)] = \
                torch.from_numpy(np.ascontiguousarray(frames)).to(self.storage)
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

    def _transitions(self, batch_size: int):
        """Sampled starts and their n-step targets: (envs, pos, k, action, reward, discount)."""
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
        action = self.action[envs, pos % self.track].astype(np.int64)
        return envs, pos, k, action, reward, discount

    def _keep(self, envs: np.ndarray, first_window: np.ndarray, start: np.ndarray) -> np.ndarray | None:
        """(B, stack) mask of the frames a stack starting at window index ``start`` keeps; None if all."""
        s = self.stack
        if s == 1:
            return None
        starts = np.take_along_axis(first_window, start[:, None] + np.arange(s)[None, :], 1)
        # a frame is kept if no newer frame in its stack starts the episode
        keep = (np.flip(np.cumsum(np.flip(starts, 1), 1), 1) - starts) == 0
        return None if keep.all() else keep

    def _gather(self, flat_index: np.ndarray, b: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Frames at ``flat_index`` (env * track + slot) on ``device``, with the staging buffers in use."""
        shape = (len(flat_index), *self.frame_shape)
        if self.storage is not None:
            index = torch.from_numpy(flat_index).to(self.storage)
            return self.frames.view(-1, *self.frame_shape).index_select(0, index).to(device), None
        flat = self.frames.reshape(-1, *self.frame_shape)
        if device.type != "cuda":
            return torch.from_numpy(np.take(flat, flat_index, axis=0, mode="clip")), None
        if not self._staging or self._staging[0][0].shape != shape:
            self._staging = [(torch.empty(shape, dtype=torch.uint8, pin_memory=True),
                              torch.empty(b, dtype=torch.int64, pin_memory=True),
                              torch.empty((2, b), dtype=torch.float32, pin_memory=True),
                              torch.cuda.Event()) for _ in range(2)]
        frames, action, floats, event = self._staging[self._turn]
        self._turn = 1 - self._turn
        event.synchronize()          # the copy that last used this buffer has finished
        np.take(flat, flat_index, axis=0, out=frames.numpy(), mode="clip")   # "clip": written in place, unbuffered
        return frames, (action, floats, event)

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> Batch:
        device = torch.device(device)
        envs, pos, k, action, reward, discount = self._transitions(batch_size)
        b, s, n = batch_size, self.stack, self.n_step
        window = (pos[:, None] + np.arange(-(s - 1), n + 1)[None, :]) % self.track    # obs frames ... pos + n
        first_window = self.first[envs[:, None], window]
        frames, staged = self._gather((envs[:, None] * self.track + window).ravel(), b, device)
        if staged is not None:      # pinned host buffers: every copy to the GPU is asynchronous
            action_buf, floats, event = staged
            action_buf.numpy()[:] = action
            floats.numpy()[0], floats.numpy()[1] = reward, discount
            frames, action_t, floats_t = (x.to(device, non_blocking=True) for x in (frames, action_buf, floats))
            event.record()
            reward_t, discount_t = floats_t[0], floats_t[1]
        else:
            action_t, reward_t, discount_t = (torch.from_numpy(x).to(device) for x in (action, reward, discount))
        frames = frames.view(b, s + n, *self.frame_shape)
        next_start = np.full(b, n) if (k == n).all() else k
        obs = frames[:, :s]
        if (k == n).all():
            nxt = frames[:, n:n + s]
        else:
            rows = torch.arange(b, device=device)[:, None]
            nxt = frames[rows, torch.from_numpy(k[:, None] + np.arange(s)[None, :]).to(device)]
        stacks = []
        for start, stack in ((np.zeros(b, np.int64), obs), (next_start, nxt)):
            keep = self._keep(envs, first_window, start)
            if keep is not None:
                stack = stack * torch.from_numpy(keep).to(device)[..., None, None, None].to(torch.uint8)
            stacks.append(stack.reshape(b, s * self.frame_shape[0], *self.frame_shape[1:]))
        return Batch(stacks[0], action_t, reward_t, discount_t, stacks[1])

    def sample_arrays(self, batch_size: int) -> tuple[np.ndarray, ...]:
        """A host batch as numpy arrays: (obs, action, reward, discount, next_obs)."""
        batch = self.sample(batch_size, "cpu")
        return batch.obs.numpy(), batch.action.numpy(), batch.reward.numpy(), batch.discount.numpy(), \
            batch.next_obs.numpy()

    # -- checkpointing -----------------------------------------------------------------------
    ARRAYS = ("frames", "action", "reward", "terminal", "episode_end", "first", "acted", "written")

    def state_dict(self) -> dict:
        state = {name: torch.as_tensor(getattr(self, name)).cpu() for name in self.ARRAYS}
        state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in self.ARRAYS:
            value = state[name]
            if tuple(value.shape) != tuple(getattr(self, name).shape):
                raise ValueError(f"replay '{name}' has shape {tuple(value.shape)}, "
                                 f"expected {tuple(getattr(self, name).shape)}")
            if name == "frames" and self.storage is not None:
                self.frames.copy_(value)
            else:
                setattr(self, name, value.numpy().copy())
        self.rng.bit_generator.state = state["rng"]

    def memory_bytes(self) -> int:
        """Bytes of frames (host or device) and metadata (host)."""
        frames = self.frames.nbytes if self.storage is None else self.frames.numel()
        return frames + sum(a.nbytes for a in (self.action, self.reward, self.terminal, self.episode_end,
                                               self.first, self.acted))
