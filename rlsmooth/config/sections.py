"""The config sections every run has (env, network, optim, spectral, loop) and the whole run's config."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from rlsmooth.config.coerce import LayerSelection, coerce, from_dict, require
from rlsmooth.errors import ConfigError


@dataclass
class EnvConfig:
    """The environments a run trains and evaluates on (``env``)."""

    suite: Literal["atari", "minatar", "gym", "test"] = "minatar"
    """Environment family: ALE Atari (ale-py), MinAtar, any registered Gymnasium env with Box observations
    and Discrete actions (``gym``: ``game`` is its id, e.g. CartPole-v1), or the tiny deterministic test env."""
    game: str = "breakout"
    """Game id within the suite, e.g. ``pong`` / ``space_invaders`` (Atari), ``breakout`` (MinAtar), ``chain`` (test)."""
    protocol: Literal["paper", "sticky"] = "paper"
    """Atari protocol (docs/protocols.md): ``paper`` = no sticky actions, 0-29 no-op starts, life loss
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
        require(self.num_envs >= 1, "env.num_envs must be >= 1")
        require(self.eval_num_envs >= 1, "env.eval_num_envs must be >= 1")
        require(self.max_episode_frames >= 1, "env.max_episode_frames must be >= 1")
        require(self.frame_skip >= 1, "env.frame_skip must be >= 1")
        require(self.frame_stack >= 1, "env.frame_stack must be >= 1")
        require(0.0 <= self.minatar_sticky_prob <= 1.0, "env.minatar_sticky_prob must be in [0, 1]")


@dataclass
class NetworkConfig:
    """The network's torso (``network``); the head belongs to the agent."""

    kind: Literal["auto", "nature", "minatar", "mlp"] = "auto"
    """Torso: Nature CNN (Atari), MinAtar net, fully connected layers only (``mlp``: ``fc1`` ... on the
    flattened observation), or ``auto`` (Nature for Atari, mlp for gym, MinAtar net otherwise)."""
    hidden: list = field(default_factory=list)
    """Units of the hidden fully connected layers (``fc``, or ``fc1`` ... ``fcM`` when there are several);
    empty = the torso's default ([512] Nature, [128] MinAtar, [64, 64] mlp)."""
    channels: list = field(default_factory=list)
    """MinAtar torso: output channels of its 3x3 stride-1 convs ``conv1`` ... ``convK``; empty = [16].
    The Nature CNN's convs are fixed."""

    def validate(self) -> None:
        for key, values in (("network.hidden", self.hidden), ("network.channels", self.channels)):
            require(all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 65536 for x in values),
                     f"{key} must be a list of integers in [1, 65536], got {values!r}")
        require(not (self.kind == "nature" and self.channels),
                 "network.channels applies to the MinAtar torso; the Nature CNN's convs are fixed")
        require(not (self.kind == "mlp" and self.channels), "network.channels applies to the MinAtar torso; "
                "the mlp torso has no convs")




@dataclass
class SpectralConfig:
    """Spectral normalisation and track-only sigma estimation (``spectral``; docs/method.md)."""

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
        require(self.k > 0, "spectral.k must be > 0")
        require(self.power_iterations >= 1, "spectral.power_iterations must be >= 1")
        require(self.log_every >= 1, "spectral.log_every must be >= 1")


@dataclass
class OptimConfig:
    """The optimiser and the rho-scaling modes, SN's optimiser-side equivalent (``optim``)."""

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
        require(self.lr > 0, f"optim.lr must be > 0 (got {self.lr})")
        require(self.eps > 0, f"optim.eps must be > 0 (got {self.eps})")
        require(0 <= self.alpha < 1, "optim.alpha must be in [0, 1)")
        require(self.momentum >= 0, "optim.momentum must be >= 0")
        require(self.grad_clip >= 0, "optim.grad_clip must be >= 0")


@dataclass
class LoopConfig:
    """Budget, evaluation, logging and checkpoint schedule of a run (``loop``; units: agent steps)."""

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
    precision: Literal["fp32", "bf16"] = "fp32"
    """Arithmetic of the networks' forward passes (and so of their backward passes): ``bf16`` runs the
    convolutions and matrix products under autocast in bfloat16, while master weights, optimiser
    states, spectral normalisation (power iteration, sigma and the normalised layer itself), rho and
    all TD / categorical / GAE arithmetic stay float32 (network outputs are cast to float32 first)."""

    def validate(self) -> None:
        require(self.total_steps >= 1, "loop.total_steps must be >= 1")
        require(self.eval_every >= 0, "loop.eval_every must be >= 0")
        require(self.eval_steps >= 1, "loop.eval_steps must be >= 1")
        require(self.eval_episodes >= 0, "loop.eval_episodes must be >= 0")
        require(0.0 <= self.eval_epsilon <= 1.0, "loop.eval_epsilon must be in [0, 1]")
        require(self.log_every >= 1, "loop.log_every must be >= 1")
        require(self.checkpoint_every >= 0, "loop.checkpoint_every must be >= 0")



@dataclass
class WandbConfig:
    """Weights & Biases logging (the ``wandb`` extra), besides metrics.jsonl and TensorBoard: the same
    metrics at the same agent steps, the resolved config as the run's config; a resumed run continues
    the same W&B run."""

    enabled: bool = False
    """Log this run to W&B."""
    project: str = "rlsmooth"
    """W&B project."""
    entity: str = ""
    """W&B entity (team or user); empty = your default entity."""
    group: str = ""
    """W&B group; empty = the sweep's name for a sweep's runs (the sweep directory's name), else none."""
    name: str = ""
    """W&B run name; empty = the run directory's name."""
    mode: Literal["online", "offline"] = "online"
    """``offline`` writes the W&B files into the run directory only (``wandb sync`` uploads them later)."""

    def validate(self) -> None:
        require(bool(self.project.strip()), "wandb.project must not be empty")


@dataclass
class TrainConfig:
    """A whole run: the agent, its ``algo`` section, the shared sections, seed, device and threads."""

    agent: str
    """Agent of the agent table (``rlsmooth.agents``): dqn, c51, ppo, a2c."""
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
    wandb: WandbConfig = field(default_factory=WandbConfig)


def parse_train_config(data: dict, algo_classes: dict[str, type]) -> TrainConfig:
    """Validate a nested dict against TrainConfig, choosing ``algo``'s class by ``agent``."""
    data = dict(data)
    data.pop("meta", None)  # provenance written next to a resolved config
    agent = data.get("agent")
    if agent is None:
        raise ConfigError(f"config needs 'agent' (one of {', '.join(algo_classes)})")
    if not isinstance(agent, str) or agent not in algo_classes:
        raise ConfigError(f"unknown agent {agent!r} (valid: {', '.join(algo_classes)})")
    algo = from_dict(algo_classes[agent], data.pop("algo", {}) or {}, prefix="algo.")
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"algo"}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}' (valid sections: algo, {', '.join(sorted(names))})")
    hints = typing.get_type_hints(TrainConfig)
    kwargs = {name: coerce(value if value is not None else {}, hints[name], name) for name, value in data.items()}
    cfg = TrainConfig(algo=algo, **kwargs)
    require(0 <= cfg.seed < 2**63, f"seed must be in [0, 2^63), got {cfg.seed}")
    require(0 <= cfg.threads <= 4096, f"threads must be in [0, 4096] (0 = all available cores), got {cfg.threads}")
    algo.check_against(cfg)   # checks that need other sections (e.g. replay size against num_envs)
    return cfg


def default_config_like(cfg: TrainConfig) -> dict:
    """``cfg``'s agent with every field, its algo section's included, at its default (as a nested dict)."""
    return dataclasses.asdict(TrainConfig(agent=cfg.agent, algo=type(cfg.algo)()))
