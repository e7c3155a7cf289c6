"""Checkpoints: written atomically, loaded with ``weights_only=True``, and checked whole before use.

A checkpoint of format :data:`FORMAT` holds the step, the run's counters, every RNG state, the
env state and current observation, the run's running statistics, the resolved config it was
written with, and the state of each stateful part (networks, optimiser, replay).  :func:`check`
compares its structure with what the run about to use it expects, and :func:`config_changes` its
config with the run directory's ``config.yaml``, before anything is restored.
"""
from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rlsmooth.errors import ConfigError, one_line
from rlsmooth.files import atomic_write

FORMAT = 2
"""Version of the checkpoint layout; a checkpoint of another version is refused with one line."""

RESUMABLE_KEYS = ("loop.total_steps", "loop.log_every", "loop.eval_every", "loop.eval_steps", "loop.eval_episodes",
                  "loop.eval_epsilon", "loop.checkpoint_every", "loop.progress", "loop.stop_return",
                  "spectral.log_every", "env.eval_num_envs", "threads", "device", "wandb.")
"""Config keys (or sections, ending in '.') that may change between a checkpoint and its resume: the
budget, logging, evaluation and checkpoint periods, progress, where and how fast the run computes.
Any other change would make the resumed run a different run, and is refused."""

RUN_LAYOUT = {"step": int, "counters": dict, "rng": {"python": tuple, "numpy": dict, "torch": torch.Tensor},
              "run": {"episodes": {"ret": list, "length": list, "finished": list},
                      "window": {"sums": dict, "count": int}, "last_eval": dict},
              "env": dict, "obs": torch.Tensor, "config": dict, "format": int}


def save_atomic(state: dict, path: str | Path) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(exist_ok=True)   # not its parents: a run directory that is gone stays gone
    except OSError as exc:
        raise ConfigError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
    atomic_write(path, lambda f: torch.save(state, f))


def load(path: str | Path) -> dict:
    """The checkpoint's dict; a missing, corrupt, unsafe or other-version file raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            raise ConfigError(f"checkpoint {path} holds objects other than tensors and plain data; it is refused "
                              f"for safety (rlsmooth never writes such a checkpoint)") from None
        raise ConfigError(f"cannot read checkpoint {path}: it is damaged ({one_line(exc)})") from None
    except Exception as exc:  # truncated, corrupt, or not a checkpoint at all
        raise ConfigError(f"cannot read checkpoint {path}: {type(exc).__name__}: {one_line(exc)}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} is not an rlsmooth checkpoint (not a mapping)")
    earlier = "format" not in state and {"step", "counters", "rng", "run"} <= set(state)   # format 1 had no key
    if earlier or ("format" in state and state["format"] != FORMAT):
        raise ConfigError(f"checkpoint {path} has format {state.get('format', 1)!r}, this rlsmooth reads format "
                          f"{FORMAT}: it was written by another version; start the run again with --replace")
    return state   # without a format key it is not a checkpoint: check() names what it lacks


def _check_layout(value, layout, key: str, path: Path) -> None:
    if isinstance(layout, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"checkpoint {path}: '{key}' is not a mapping: the checkpoint is damaged")
        for name, inner in layout.items():
            where = f"{key}.{name}" if key else name
            if name not in value:
                raise ConfigError(f"checkpoint {path} lacks '{where}': it is damaged or was written by something else")
            _check_layout(value[name], inner, where, path)
    elif isinstance(layout, set):   # exactly these keys
        if not isinstance(value, dict):
            raise ConfigError(f"checkpoint {path}: '{key}' is not a mapping: the checkpoint is damaged")
        missing, extra = sorted(layout - set(value)), sorted(set(value) - layout)
        if missing or extra:
            what = f"lacks '{key}.{missing[0]}'" if missing else f"has an unknown key '{key}.{extra[0]}'"
            raise ConfigError(f"checkpoint {path} {what}: it is damaged or belongs to another kind of run")
    elif layout is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"checkpoint {path}: '{key}' is not an integer: the checkpoint is damaged")
    elif layout is not int and not isinstance(value, layout):
        raise ConfigError(f"checkpoint {path}: '{key}' is not a {layout.__name__}: the checkpoint is damaged")


def state_keys(target) -> set[str]:
    """The keys ``target.state_dict()`` has (cheaply: no tensor is copied)."""
    if isinstance(target, nn.Module):
        return set(target.state_dict(keep_vars=True))
    if isinstance(target, torch.optim.Optimizer):
        return {"state", "param_groups"}
    return set(target.state_keys())


def check(state: dict, path: Path, counters: dict | None = None, env_keys: set[str] | None = None,
          stateful: dict | None = None) -> None:
    """The whole structure against what this run expects: one ConfigError line naming the first key
    that is missing, unknown or of the wrong type.  Without ``counters`` / ``env_keys`` / ``stateful``
    only the run's own layout is checked (before the learner exists)."""
    layout = dict(RUN_LAYOUT)
    if counters is not None:
        layout["counters"] = set(counters)
    if env_keys is not None:
        layout["env"] = env_keys
    stateful = stateful or {}
    for name, target in stateful.items():
        layout[name] = state_keys(target)
    _check_layout(state, layout, "", path)
    unknown = sorted(set(state) - set(layout)) if stateful else []
    if unknown:
        raise ConfigError(f"checkpoint {path} has an unknown key '{unknown[0]}': it is damaged or belongs to "
                          f"another kind of run")
    for name, value in state["counters"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"checkpoint {path}: 'counters.{name}' is not a number: the checkpoint is damaged")


def flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and key != "meta":
            out.update(flatten(value, f"{prefix}{key}."))
        elif key != "meta":
            out[f"{prefix}{key}"] = value
    return out


def resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)


def config_changes(saved: dict, current: dict, defaults: dict | None = None) -> tuple[dict, dict]:
    """(changes that shape the run, changes allowed on resume): {key: (checkpoint's value, config.yaml's)}.

    ``defaults`` (a config of the same agent with every field at its default): a key the checkpoint's
    config lacks reads as its default there, since a checkpoint written before the key existed ran
    the behaviour that its default keeps."""
    old, new = flatten(saved), flatten(current)
    old = {**{k: v for k, v in flatten(defaults or {}).items() if k not in old}, **old}
    changed = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
    return ({k: v for k, v in changed.items() if not resumable(k)},
            {k: v for k, v in changed.items() if resumable(k)})


def describe(changes: dict) -> str:
    return "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changes.items())


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


def check_against_config(state: dict, path: Path, cfg) -> None:
    """What the run's config determines inside its checkpoint, against the config: the optimiser's
    epsilon and (unless annealed) learning rate in every parameter group, and the next logging,
    evaluation and checkpoint steps against the periods that set them.  A hand-edited checkpoint
    would resume into a run that differs from the uninterrupted one; it is refused by key."""
    groups = (state.get("optimizer") or {}).get("param_groups") or []
    annealed = bool(getattr(cfg.algo, "anneal_lr", False))
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            continue
        where = f"checkpoint {path}: 'optimizer.param_groups[{i}]"
        if "eps" in group and group["eps"] != cfg.optim.eps:
            raise ConfigError(f"{where}.eps' is {group['eps']!r} where optim.eps is {cfg.optim.eps!r}: the checkpoint "
                              f"was changed since it was written")
        base = group.get("base_lr", group.get("lr"))
        if base is not None and not annealed and base != cfg.optim.lr:
            raise ConfigError(f"{where}.base_lr' is {base!r} where optim.lr is {cfg.optim.lr!r}: the checkpoint was "
                              f"changed since it was written")
        if annealed and base is not None and not 0.0 <= float(base) <= cfg.optim.lr:
            raise ConfigError(f"{where}.base_lr' is {base!r}, outside the annealed range [0, {cfg.optim.lr!r}]")
        if group.get("name") == "base" and "lr" in group and base is not None and group["lr"] != base:
            raise ConfigError(f"{where}.lr' is {group['lr']!r} where the schedule gives {base!r}: the checkpoint was "
                              f"changed since it was written")
    saved = flatten(state.get("config") or {})
    step = int(state["step"])
    for counter, period_key in (("next_log", "loop.log_every"), ("next_eval", "loop.eval_every"),
                                ("next_checkpoint", "loop.checkpoint_every")):
        period, value = saved.get(period_key), state["counters"].get(counter)
        if isinstance(period, int) and period > 0 and value is not None and not step < value <= step + period:
            raise ConfigError(f"checkpoint {path}: 'counters.{counter}' is {value!r}, which {period_key}={period} "
                              f"cannot give at step {step:,}: the checkpoint was changed since it was written")
