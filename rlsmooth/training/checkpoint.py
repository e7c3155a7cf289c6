"""Checkpoints: written atomically, loaded with ``weights_only=True``, checked for their structure."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from rlsmooth.errors import ConfigError, one_line
from rlsmooth.files import atomic_write


def save_atomic(state: dict, path: str | Path) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(exist_ok=True)   # not its parents: a run directory that is gone stays gone
    except OSError as exc:
        raise ConfigError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
    atomic_write(path, lambda f: torch.save(state, f))


def load(path: str | Path, required: tuple[str, ...] = ("step",)) -> dict:
    """A checkpoint dict holding at least ``required``; anything else raises ConfigError with one line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, not a checkpoint, or refused by the weights-only unpickler
        raise ConfigError(f"cannot read checkpoint {path}: {type(exc).__name__}: {one_line(exc)}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} is not an rlsmooth checkpoint (not a mapping)")
    missing = [key for key in required if key not in state]
    if missing:
        raise ConfigError(f"checkpoint {path} lacks {', '.join(repr(k) for k in missing)}: it was written by "
                          f"another agent or another version of rlsmooth")
    return state


def restore(target, state: dict, key: str, source: str = "the run's checkpoint") -> None:
    """``target.load_state_dict(state[key])``, turning a mismatch into one ConfigError line naming ``source``."""
    try:
        target.load_state_dict(state[key])
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"{source}: '{key}' does not match this run's config: "
                          f"{type(exc).__name__}: {one_line(exc)}") from None


def rng_state(np_rng: np.random.Generator) -> dict:
    state = {"python": random.getstate(), "numpy": np_rng.bit_generator.state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, np_rng: np.random.Generator) -> None:
    random.setstate(state["python"])
    np_rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
