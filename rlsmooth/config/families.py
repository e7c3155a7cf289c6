"""What the agents of each family share: each agent's own ``algo`` dataclass extends one of these."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rlsmooth.config.coerce import require_all
from rlsmooth.errors import ConfigError

if TYPE_CHECKING:
    from rlsmooth.config.sections import TrainConfig


@dataclass
class ValueConfig:
    """Hyper-parameters every value-based agent reads (DQN-Adam defaults; units: agent steps)."""

    replay_capacity: int = 1_000_000
    """Replay size in transitions (split evenly over the N envs)."""
    replay_storage: Literal["host", "device"] = "host"
    """Where the replay's frames live: host memory (batches go to the GPU through pinned staging
    buffers) or the training device (MinAtar always fits; Atari's 7 GB on a large GPU)."""
    batch_size: int = 32
    """Transitions per gradient update."""
    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 1
    """Length of the bootstrapped return (1 = one-step TD)."""
    replay_ratio: float = 0.25
    """Gradient updates per agent step (the paper: one update every 4 agent steps), kept for any N."""
    learning_starts: int = 20_000
    """Agent steps of pure exploration before the first update."""
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

    separate_critic: bool = False
    """Give the critic its own torso (critic.conv1 ... critic.fc) instead of sharing the actor's."""
    num_steps: int = 128
    """Rollout length T per env (agent steps per env between updates)."""
    norm_adv: bool = True
    """Normalise advantages (per minibatch)."""
    gamma: float = 0.99
    """Discount factor."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the run."""
    gae_lambda: float = 0.95
    """GAE lambda (1 = plain n-step returns)."""
    eval_policy: Literal["sampled", "greedy", "both"] = "sampled"
    """Evaluation policy: sample from pi, take its argmax, or report both (eval/greedy/...)."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""

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
