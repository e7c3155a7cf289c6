"""Evaluation episodes as MP4 files (``rlsmooth eval RUN --video DIR``; needs the ``video`` extra).

Each episode is played on its own single env with its own seed, by the policy that ``eval`` scores,
and written frame by frame: one frame at the reset and one per agent step.

* Atari: the policy sees the protocol's 84x84 grey stack, and the video shows the game in full
  colour at 210x160.  The colour frames come from a second ALE env created with the same game,
  protocol and seed and stepped with the same actions: the emulator is deterministic given its
  seed (no-op starts and sticky actions included), so both envs play the same episode.
* MinAtar: the 10x10 grid the agent sees, each cell drawn 16x16 in the colour of its channel.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from rlsmooth.config.sections import TrainConfig
from rlsmooth.errors import ConfigError, UserError, one_line
from rlsmooth.files import write_failure
from rlsmooth.pieces.envs import VecEnv, ale_options, make_vec_env
from rlsmooth.pieces.seeding import ale_seed

CELL = 16   # pixels per MinAtar cell
# One colour per MinAtar channel (up to 10 channels: seaquest has the most), on black.
PALETTE = np.array([[255, 221, 0], [0, 153, 255], [255, 68, 68], [68, 255, 119], [255, 136, 0],
                    [187, 102, 255], [255, 255, 255], [0, 221, 221], [255, 119, 187], [136, 136, 136]], np.uint8)


class Episode(NamedTuple):
    path: Path
    episode_return: float
    steps: int
    frame_shape: tuple[int, int, int]


def check_video_extra(suite: str, out: Path) -> None:
    """One line before anything is played when videos cannot be made (or would overwrite files)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--video {out}: {'is a file' if not out.is_dir() else 'is not empty'}; "
                          f"give a new or empty directory")
    if suite not in ("atari", "minatar"):
        raise ConfigError(f"--video records Atari and MinAtar games; env.suite {suite!r} has no frames to show")
    missing = [m for m in ("imageio", "imageio_ffmpeg") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"--video needs the video extra (missing: {', '.join(missing)}): pip install -e '.[video]'")


def grid_frame(grid: np.ndarray) -> np.ndarray:
    """(C, H, W) binary MinAtar grid -> (H*16, W*16, 3) RGB: each cell in the colour of its highest
    set channel, black where none is set."""
    channels = grid.shape[0]
    top = channels - 1 - np.argmax(grid[::-1] > 0, axis=0)
    image = np.where((grid > 0).any(0)[..., None], PALETTE[top % len(PALETTE)], 0).astype(np.uint8)
    return image.repeat(CELL, axis=0).repeat(CELL, axis=1)


class AtariColour:
    """The colour twin of a one-env AtariVecEnv: same game, protocol and seed, stepped with the same actions."""

    def __init__(self, cfg: TrainConfig, seed: np.ndarray, max_steps: int):
        from ale_py.vector_env import AtariVectorEnv
        self._env = AtariVectorEnv(cfg.env.game, 1, **ale_options(cfg.env, max_steps, colour=True))
        self._seed = np.array([ale_seed(seed)], dtype=np.int64)

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset(seed=self._seed)
        return obs[0, -1]

    def step(self, action: np.ndarray) -> np.ndarray:
        obs, _, terminated, truncated, info = self._env.step(action.astype(np.int64))
        ended = bool(terminated[0] or truncated[0])
        return (info["final_obs"] if ended else obs)[0, -1]

    def close(self) -> None:
        self._env.close()


def play(cfg: TrainConfig, env: VecEnv, policy: Callable, seed: np.ndarray) -> tuple[list[np.ndarray], float]:
    """One episode's frames and return."""
    colour = AtariColour(cfg, seed, env.max_steps) if cfg.env.suite == "atari" else None
    obs = env.reset()
    frames = [colour.reset() if colour else grid_frame(obs[0])]
    total = 0.0
    while True:
        action = policy(obs)
        step = env.step(action)
        total += float(step.raw_reward[0])
        frames.append(colour.step(action) if colour else grid_frame(step.final_obs[0]))
        if step.episode_end[0]:
            break
        obs = step.obs
    if colour:
        colour.close()
    return frames, total


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v2 as imageio
    # macro_block_size=1 keeps the frame size (210 is not a multiple of 16); both sides are even, as H.264 needs
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1, quality=8,
                            ffmpeg_log_level="quiet") as writer:
        for frame in frames:
            writer.append_data(frame)


def record(cfg: TrainConfig, make_policy: Callable[[VecEnv], Callable], seeds: list[np.ndarray],
           out: Path) -> list[Episode]:
    """Play one episode per seed and write ``out/episode_<i>.mp4``; Atari at 60 / frame skip frames/s
    (real time), MinAtar at 10."""
    check_video_extra(cfg.env.suite, out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--video {out}: cannot create the directory: {write_failure(exc, out.parent)}") from None
    fps = 60 / cfg.env.frame_skip if cfg.env.suite == "atari" else 10
    episodes: list[Episode] = []
    written: list[Path] = []
    try:
        for i, seed in enumerate(seeds):
            env = make_vec_env(cfg.env, [seed], training=False)
            frames, total = play(cfg, env, make_policy(env), seed)
            env.close()
            path = out / f"episode_{i}.mp4"
            partial = out / f".episode_{i}.mp4.partial.mp4"   # renamed once whole: no half-written episode_<i>.mp4
            written.append(partial)
            partial.open("wb").close()   # a read-only or full disk says so here, not through ffmpeg's pipe
            write_mp4(partial, frames, fps)
            partial.rename(path)
            written.append(path)
            episodes.append(Episode(path, total, len(frames) - 1, frames[0].shape))
    except (OSError, RuntimeError, ValueError) as exc:   # read-only, full disk, ffmpeg's broken pipe
        for p in written:
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass
        if created:
            shutil.rmtree(out, ignore_errors=True)
        reason = write_failure(exc, out) if isinstance(exc, OSError) else one_line(exc)
        raise UserError(f"--video {out}: cannot write the videos ({reason}); nothing was kept") from None
    return episodes
