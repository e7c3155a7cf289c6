"""Typed configuration: YAML + ``key.sub=value`` overrides validated against dataclasses.

Every section is a dataclass whose fields carry a docstring (the string literal after the
field) stating meaning and units.  Loading never guesses: an unknown key, a value of the
wrong type or an impossible value raises :class:`ConfigError` with one line naming it.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from rlsmooth.errors import ConfigError


# ---------------------------------------------------------------------------------------
# Sections shared by every agent
# ---------------------------------------------------------------------------------------

@dataclass
class EnvConfig:
    suite: Literal["atari", "minatar", "test"] = "minatar"
    """Environment family: ALE Atari (ale-py), MinAtar, or the tiny deterministic test env."""
    game: str = "breakout"
    """Game id within the suite, e.g. ``pong`` / ``space_invaders`` (Atari), ``breakout`` (MinAtar), ``chain`` (test)."""
    protocol: Literal["paper", "sticky"] = "paper"
    """Atari protocol (docs/protocols.md): ``paper`` = no sticky actions, 0-30 no-op starts, life loss
    terminal in training; ``sticky`` = Machado et al. 2018 (repeat-action probability 0.25, no no-op
    starts, no life-loss terminal)."""
    clip_rewards: bool = True
    """Clip the learner's rewards to [-1, 1] in training (under either protocol, as Dopamine and
    Machado et al. 2018 do); evaluation and every reported return always use raw game scores."""
    num_envs: int = 1
    """Parallel training environments N, stepped together; one batched forward pass acts for all."""
    eval_num_envs: int = 8
    """Parallel evaluation environments."""
    max_episode_frames: int = 108_000
    """Atari episode cap in emulator frames (truncation, bootstrapped through; 108k frames = 30 min)."""
    frame_skip: int = 4
    """Atari emulator frames per agent step (max-pooled over the last two)."""
    frame_stack: int = 4
    """Atari frames stacked into one observation."""
    fire_reset: bool = False
    """Atari: press FIRE after reset in games that need it (the paper's setup does not)."""
    minatar_sticky_prob: float = 0.1
    """MinAtar sticky-action probability (the package default, used by the MinAtar paper)."""

    def validate(self) -> None:
        _require(self.num_envs >= 1, "env.num_envs must be >= 1")
        _require(self.eval_num_envs >= 1, "env.eval_num_envs must be >= 1")
        _require(self.max_episode_frames >= 1, "env.max_episode_frames must be >= 1")
        _require(self.frame_skip >= 1, "env.frame_skip must be >= 1")
        _require(self.frame_stack >= 1, "env.frame_stack must be >= 1")
        _require(0.0 <= self.minatar_sticky_prob <= 1.0, "env.minatar_sticky_prob must be in [0, 1]")


@dataclass
class NetworkConfig:
    kind: Literal["auto", "nature", "minatar"] = "auto"
    """Torso: Nature CNN (Atari), MinAtar net, or ``auto`` (Nature for Atari, MinAtar net otherwise)."""
    hidden: list = field(default_factory=list)
    """Units of the hidden fully connected layers (``fc``, or ``fc1`` ... ``fcM`` when there are several);
    empty = the torso's default ([512] Nature, [128] MinAtar)."""
    channels: list = field(default_factory=list)
    """MinAtar torso: output channels of its 3x3 stride-1 convs ``conv1`` ... ``convK``; empty = [16].
    The Nature CNN's convs are fixed."""

    def validate(self) -> None:
        for key, values in (("network.hidden", self.hidden), ("network.channels", self.channels)):
            _require(all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 65536 for x in values),
                     f"{key} must be a list of integers in [1, 65536], got {values!r}")
        _require(not (self.kind == "nature" and self.channels),
                 "network.channels applies to the MinAtar torso; the Nature CNN's convs are fixed")


LayerSelection = Union[str, int, list]


@dataclass
class SpectralConfig:
    layers: LayerSelection = "none"
    """Layers to spectrally normalise: names or Python-style indices over the network's named layers
    (``[-2]``, ``[fc]``, ``[conv3, fc]``), ``all`` or ``none``."""
    track: LayerSelection = "none"
    """Layers whose sigma is estimated and logged without changing the forward pass (track-only)."""
    k: float = 1.0
    """Lipschitz target: W_used = W / (sigma / k)."""
    only_shrink: bool = False
    """Only-shrink variant: W_used = W / max(sigma / k, 1)."""
    power_iterations: int = 1
    """Power-iteration steps per training forward pass (forward passes with gradients enabled)."""
    grad_through_sigma: bool = True
    """Back-propagate through sigma (standard SN); False treats sigma as a constant."""
    conv_norm: Literal["kernel", "operator"] = "kernel"
    """Conv sigma: norm of the reshaped kernel (out x in*kh*kw, as PyTorch) or the true operator norm of
    the strided convolution at the layer's input size."""
    log_every: int = 10_000
    """Interval for ``spectral/sigma/<layer>`` metrics, in agent steps."""

    def validate(self) -> None:
        _require(self.k > 0, "spectral.k must be > 0")
        _require(self.power_iterations >= 1, "spectral.power_iterations must be >= 1")
        _require(self.log_every >= 1, "spectral.log_every must be >= 1")


@dataclass
class OptimConfig:
    name: Literal["adam", "rmsprop", "sgd"] = "adam"
    """Optimiser."""
    lr: float = 2.5e-4
    """Learning rate eta."""
    eps: float = 3.125e-4
    """Adam / RMSprop epsilon."""
    alpha: float = 0.95
    """RMSprop smoothing constant."""
    centered: bool = True
    """RMSprop: centred variant (DQN-Nature)."""
    momentum: float = 0.0
    """SGD / RMSprop momentum."""
    grad_clip: float = 0.0
    """Max global gradient norm; 0 disables clipping."""
    implementation: Literal["auto", "single", "foreach", "fused"] = "auto"
    """Optimiser kernels: ``single`` (a loop over tensors), ``foreach`` (batched; bit-identical to
    single), ``fused`` (one kernel; equal to single up to float rounding, about 3x faster for the
    MinAtar net's Adam step on CPU).  ``auto``: fused for Adam and SGD, foreach for RMSprop."""
    rho_scaling: Literal["none", "lr", "grad", "lr+grad", "divout"] = "none"
    """Optimiser-side equivalent of SN (docs/method.md) using rho = tracked sigma of ``rho_layers``:
    ``lr`` eta/rho for that layer's weight, ``grad`` weight gradient / rho, ``lr+grad`` both,
    ``divout`` network output / stop_gradient(rho). The forward pass is not normalised."""
    rho_layers: LayerSelection = field(default_factory=lambda: ["fc"])
    """Layers whose sigma supplies rho (product over layers for ``divout``)."""
    rho_only_shrink: bool = True
    """Clamped rho, as the paper's code: divide by max(rho / k, 1) (k = ``spectral.k``) instead of rho / k.
    False gives the unclamped SN-equivalent form."""

    def validate(self) -> None:
        _require(self.lr > 0, f"optim.lr must be > 0 (got {self.lr})")
        _require(self.eps > 0, f"optim.eps must be > 0 (got {self.eps})")
        _require(0 <= self.alpha < 1, "optim.alpha must be in [0, 1)")
        _require(self.momentum >= 0, "optim.momentum must be >= 0")
        _require(self.grad_clip >= 0, "optim.grad_clip must be >= 0")


@dataclass
class LoopConfig:
    total_steps: int = 100_000
    """Training length in agent steps (summed over the N parallel envs)."""
    eval_every: int = 25_000
    """Run an evaluation phase every this many agent steps (0 = only at the end)."""
    eval_steps: int = 10_000
    """Length of an evaluation phase in agent steps (episodes still running at the end are dropped)."""
    eval_episodes: int = 0
    """If > 0, an evaluation phase instead runs until this many episodes finished (capped at 100x eval_steps)."""
    eval_epsilon: float = 0.001
    """Exploration rate during evaluation (value-based agents)."""
    stop_return: Union[float, None] = None
    """Stop training once an evaluation's mean return exceeds this (raw game score), as
    Stable-Baselines3's StopTrainingOnRewardThreshold does; ``null`` = train for ``total_steps``."""
    log_every: int = 1_000
    """Training metrics interval in agent steps."""
    checkpoint_every: int = 50_000
    """Checkpoint interval in agent steps (0 = only at the end and on Ctrl-C)."""
    save_replay: bool = True
    """Include the replay buffer in checkpoints (exact resume; costs disk for large buffers)."""
    progress: bool = True
    """Show a progress bar on stderr."""
    compile: bool = False
    """``torch.compile`` the update's forward and loss and the acting forward pass (SN and rho scaling
    included): CUDA graphs (mode ``reduce-overhead``) on CUDA, inductor's default mode on CPU.  The
    first updates pay the compile time (tens of seconds on a small CPU)."""

    def validate(self) -> None:
        _require(self.total_steps >= 1, "loop.total_steps must be >= 1")
        _require(self.eval_every >= 0, "loop.eval_every must be >= 0")
        _require(self.eval_steps >= 1, "loop.eval_steps must be >= 1")
        _require(self.eval_episodes >= 0, "loop.eval_episodes must be >= 0")
        _require(0.0 <= self.eval_epsilon <= 1.0, "loop.eval_epsilon must be in [0, 1]")
        _require(self.log_every >= 1, "loop.log_every must be >= 1")
        _require(self.checkpoint_every >= 0, "loop.checkpoint_every must be >= 0")


# ---------------------------------------------------------------------------------------
# Generic dataclass <-> dict machinery
# ---------------------------------------------------------------------------------------

def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def require_all(checks: list[tuple[bool, str]]) -> None:
    """Raise ConfigError with the message of the first failed (condition, message) check."""
    for ok, message in checks:
        _require(ok, message)


def _type_name(tp: Any) -> str:
    if tp is LayerSelection:
        return "layer selection (name, index, list of them, 'all' or 'none')"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is LayerSelection:
        if isinstance(value, bool) or not isinstance(value, (str, int, list)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        if isinstance(value, list) and not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{key}: list items must be layer names or integer indices, got {value!r}")
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected one of {_type_name(tp)}, got {value!r}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return None
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if not -2**63 <= value < 2**63:
            raise ConfigError(f"{key}: {value} is out of range (integers must fit in 64 bits)")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            raise ConfigError(f"{key}: {value} is out of range") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # programming error, not user input


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad values raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' (valid keys: {', '.join(sorted(names))})")
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    obj = cls(**kwargs)
    obj.validate()   # every config section and agent config defines its own checks
    return obj


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def deep_merge(base: dict, update: dict) -> dict:
    """``update`` on top of ``base``; nested mappings merge, everything else replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(f"duplicate key '{key}' (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's contents; a missing, unreadable or undecodable file raises ConfigError."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def parse_yaml(text: str, path: str | Path) -> Any:
    """YAML with duplicate keys refused; errors name the file and line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML {path}: {' '.join(str(exc).split())}") from None


def load_yaml(path: str | Path, _seen: tuple = ()) -> dict:
    """Read a config; a top-level ``base: other.yaml`` (relative to this file) is loaded first."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"config {path} includes itself through 'base'")
    data = parse_yaml(read_text(path, "config file"), path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config sections")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: 'base' must be a path to another YAML config")
        data = deep_merge(load_yaml(path.parent / base, _seen + (path.resolve(),)), data)
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a config section")
            node = child
        node[parts[-1]] = value
    return data


# ---------------------------------------------------------------------------------------
# What the agents of each family share (each agent's own dataclass extends one of these)
# ---------------------------------------------------------------------------------------

@dataclass
class ValueConfig:
    """Hyper-parameters every value-based agent reads (DQN-Adam defaults; units: agent steps)."""

    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 1
    """Length of the bootstrapped return (1 = one-step TD)."""
    batch_size: int = 32
    """Transitions per gradient update."""
    replay_capacity: int = 1_000_000
    """Replay size in transitions (split evenly over the N envs)."""
    replay_storage: Literal["host", "device"] = "host"
    """Where the replay's frames live: host memory (batches go to the GPU through pinned staging
    buffers) or the training device (MinAtar always fits; Atari's 7 GB on a large GPU)."""
    learning_starts: int = 20_000
    """Agent steps of pure exploration before the first update."""
    replay_ratio: float = 0.25
    """Gradient updates per agent step (the paper: one update every 4 agent steps), kept for any N."""
    target_update_every: int = 8_000
    """Agent steps between copies of the online network into the target network."""
    epsilon_start: float = 1.0
    """Exploration rate during and right after warm-up."""
    epsilon_end: float = 0.01
    """Final exploration rate (at most ``epsilon_start``)."""
    epsilon_decay_steps: int = 250_000
    """Agent steps (after ``learning_starts``) over which epsilon decays linearly."""

    def validate(self) -> None:
        require_all([
            (0.0 <= self.gamma <= 1.0, "algo.gamma must be in [0, 1]"),
            (self.n_step >= 1, "algo.n_step must be >= 1"),
            (self.batch_size >= 1, "algo.batch_size must be >= 1"),
            (self.replay_capacity >= 1, "algo.replay_capacity must be >= 1"),
            (self.batch_size <= self.replay_capacity,
             f"algo.batch_size ({self.batch_size}) is larger than algo.replay_capacity ({self.replay_capacity})"),
            (self.learning_starts >= 0, "algo.learning_starts must be >= 0"),
            (self.replay_ratio > 0, "algo.replay_ratio must be > 0"),
            (self.target_update_every >= 1, "algo.target_update_every must be >= 1"),
            (0.0 <= self.epsilon_end <= 1.0 and 0.0 <= self.epsilon_start <= 1.0, "algo.epsilon_* must be in [0, 1]"),
            (self.epsilon_end <= self.epsilon_start,
             f"algo.epsilon_end ({self.epsilon_end}) is above algo.epsilon_start ({self.epsilon_start}): "
             f"exploration would rise during training"),
            (self.epsilon_decay_steps >= 0, "algo.epsilon_decay_steps must be >= 0")])

    def check_against(self, cfg: "TrainConfig") -> None:
        per_env = self.replay_capacity // cfg.env.num_envs
        if per_env < 4 * cfg.env.frame_stack + self.n_step + 2:
            raise ConfigError(f"algo.replay_capacity {self.replay_capacity} is too small for {cfg.env.num_envs} envs")
        needed = max(self.batch_size, cfg.env.num_envs * (self.n_step + cfg.env.frame_stack + 2))
        if self.learning_starts < needed:
            raise ConfigError(f"algo.learning_starts must be >= {needed} (a batch, and n-step + frame-stack "
                              f"history in every env)")
        if self.learning_starts >= cfg.loop.total_steps:
            raise ConfigError(f"algo.learning_starts ({self.learning_starts}) >= loop.total_steps "
                              f"({cfg.loop.total_steps}): the run would make no update")


@dataclass
class ActorCriticConfig:
    """Hyper-parameters PPO and A2C share (CleanRL's PPO Atari defaults; units: agent steps)."""

    num_steps: int = 128
    """Rollout length T per env (agent steps per env between updates)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda (1 = plain n-step returns)."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    norm_adv: bool = True
    """Normalise advantages (per minibatch)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the run."""
    separate_critic: bool = False
    """Give the critic its own torso (critic.conv1 ... critic.fc) instead of sharing the actor's."""
    eval_policy: Literal["sampled", "greedy", "both"] = "sampled"
    """Evaluation policy: sample from pi, take its argmax, or report both (eval/greedy/...)."""

    def validate(self) -> None:
        require_all([(self.num_steps >= 1, "algo.num_steps must be >= 1"),
                     (0.0 <= self.gamma <= 1.0, "algo.gamma must be in [0, 1]"),
                     (0.0 <= self.gae_lambda <= 1.0, "algo.gae_lambda must be in [0, 1]"),
                     (self.ent_coef >= 0 and self.vf_coef >= 0, "algo.ent_coef and algo.vf_coef must be >= 0")])

    def check_against(self, cfg: "TrainConfig") -> None:
        """``loop.total_steps`` means the same as for value-based agents: the run makes exactly that many
        agent steps, so it must be a whole number of rollouts of N x T."""
        batch = cfg.env.num_envs * self.num_steps
        total = cfg.loop.total_steps
        if total % batch:
            below, above = total // batch * batch, (total // batch + 1) * batch
            nearest = f"{below:_} or {above:_}" if below else f"{above:_}"
            raise ConfigError(f"loop.total_steps ({total:_}) must be a multiple of env.num_envs x algo.num_steps "
                              f"= {batch}; nearest valid: {nearest}")


# ---------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    agent: str
    """Agent module under ``agents/``: dqn, c51, ppo, a2c."""
    algo: Any
    """The agent's own hyper-parameters (its config dataclass)."""
    seed: int = 0
    """Run seed in [0, 2^63): every random stream (each env, init, policy, replay) derives from it."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where networks and updates run; ``auto`` picks CUDA when available."""
    threads: int = 0
    """Torch intra-op threads: 0 = OMP_NUM_THREADS if set, else every core this process may use; sweeps give each
    run ``cores / workers`` (one thread per run by default), since spinning threads of runs that
    share cores slow each other down many-fold."""
    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    spectral: SpectralConfig = field(default_factory=SpectralConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)


def parse_train_config(data: dict, algo_classes: dict[str, type]) -> TrainConfig:
    """Validate a nested dict against TrainConfig, choosing ``algo``'s class by ``agent``."""
    data = dict(data)
    data.pop("meta", None)  # provenance written next to a resolved config
    agent = data.get("agent")
    if agent is None:
        raise ConfigError(f"config needs 'agent' (one of {', '.join(algo_classes)})")
    if agent not in algo_classes:
        raise ConfigError(f"unknown agent '{agent}' (valid: {', '.join(algo_classes)})")
    algo = from_dict(algo_classes[agent], data.pop("algo", {}) or {}, prefix="algo.")
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"algo"}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}' (valid sections: algo, {', '.join(sorted(names))})")
    hints = typing.get_type_hints(TrainConfig)
    kwargs = {name: _coerce(value if value is not None else {}, hints[name], name) for name, value in data.items()}
    cfg = TrainConfig(algo=algo, **kwargs)
    _require(0 <= cfg.seed < 2**63, f"seed must be in [0, 2^63), got {cfg.seed}")
    _require(0 <= cfg.threads <= 4096, f"threads must be in [0, 4096] (0 = all available cores), got {cfg.threads}")
    algo.check_against(cfg)   # checks that need other sections (e.g. replay size against num_envs)
    return cfg
