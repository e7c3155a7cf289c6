"""Who may share a population, and moving a member's state between its solo objects and the stacks.

Every member is a whole solo run: its own run skeleton (seed streams, envs, replay, logger, run
directory, checkpoints, evaluation), and its own solo networks and optimiser, which hold its state
whenever it is logged, evaluated or checkpointed.  Between those moments the state lives in the
stacked networks and the stacked Adam, where all members train in one pass.
"""
from __future__ import annotations

import json

import torch

from rlsmooth.agents import AGENTS
from rlsmooth.agents.dqn import ValueRun
from rlsmooth.config.coerce import to_dict
from rlsmooth.config.sections import TrainConfig
from rlsmooth.errors import ConfigError
from rlsmooth.pieces.spectral import raw_weight
from rlsmooth.population.adam import StackedAdam
from rlsmooth.population.stacked import StackedQNetwork, _estimator
from rlsmooth.training.checkpoint import flatten

MEMBER_KEYS = ("seed", "optim.lr", "optim.eps", "optim.grad_clip", "optim.rho_scaling", "optim.rho_layers",
               "optim.rho_only_shrink", "spectral.layers", "spectral.track", "spectral.k", "spectral.only_shrink",
               "wandb.")
"""What may differ between the members of one population: the seed, the variant (SN on which layers,
rho scaling) and the optimiser's learning rate, epsilon and clipping.  Everything else (agent, env,
network shape, algo, loop, optimiser kind) is shared."""


def _member_key(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in MEMBER_KEYS)


def shared_key(cfg: TrainConfig) -> str | None:
    """What every member of ``cfg``'s population must share, as text (None: this agent trains alone)."""
    if AGENTS[cfg.agent].FAMILY != "value":
        return None
    shared = {k: v for k, v in flatten(to_dict(cfg)).items() if not _member_key(k)}
    return json.dumps(shared, sort_keys=True, default=str)


def check_members(cfgs: list[TrainConfig]) -> None:
    """ConfigError with one line when the configs cannot train in one process."""
    first = cfgs[0]
    if AGENTS[first.agent].FAMILY != "value":
        raise ConfigError(f"the population mode trains value-based agents (dqn, c51); {first.agent} runs one "
                          f"process per run")
    for why, bad in (("optim.name must be adam", first.optim.name != "adam"),
                     ("spectral.conv_norm must be kernel", first.spectral.conv_norm != "kernel"),
                     ("loop.compile must be false", first.loop.compile)):
        if bad:
            raise ConfigError(f"population members: {why} (the stacked networks and Adam implement only that)")
    base = flatten(to_dict(first))
    for cfg in cfgs[1:]:
        other = flatten(to_dict(cfg))
        for key in sorted(set(base) | set(other)):
            if not _member_key(key) and base.get(key) != other.get(key):
                raise ConfigError(f"these runs cannot share a population: {key} is {base.get(key)!r} in one and "
                                  f"{other.get(key)!r} in another (members may differ only in "
                                  f"{', '.join(k.rstrip('.') for k in MEMBER_KEYS)})")


def rho_setup(cfgs: list[TrainConfig], layers: list[str], rho_layers: list[list[str]]) -> dict:
    """Per-member rho scaling as masks over the layers (K,) and the divisors' options."""
    mode = [c.optim.rho_scaling for c in cfgs]

    def on(modes: tuple) -> dict[str, torch.Tensor]:
        masks = {n: torch.tensor([m in modes and n in r for m, r in zip(mode, rho_layers)]) for n in layers}
        return {n: mask for n, mask in masks.items() if bool(mask.any())}
    return {"divout": torch.tensor([m == "divout" for m in mode]),
            "layers": on(("lr", "grad", "lr+grad", "divout")), "lr": on(("lr", "lr+grad")), "grad": on(("grad", "lr+grad")),
            "only_shrink": torch.tensor([c.optim.rho_only_shrink for c in cfgs]),
            "k": torch.tensor([c.spectral.k for c in cfgs])}


def stack(runs: list[ValueRun], cfgs: list[TrainConfig], device: torch.device):
    """The stacked online and target networks and the stacked Adam, from the members' solo state."""
    names = runs[0].learner.net.conv_names + runs[0].learner.net.fc_names + ["out"]
    rho = rho_setup(cfgs, names, [r.learner.layers["rho_layers"] for r in runs])
    net = StackedQNetwork([r.learner.net for r in runs], rho).to(device)
    target = StackedQNetwork([r.learner.target for r in runs], rho).to(device)
    target.eval()
    target.requires_grad_(False)
    per = lambda values: torch.tensor(values, dtype=torch.float32, device=device)   # noqa: E731
    lr = torch.tensor([c.optim.lr for c in cfgs], dtype=torch.float64, device=device)   # as Python floats are
    adam = StackedAdam(net, lr, per([c.optim.eps for c in cfgs]),
                       per([c.optim.grad_clip for c in cfgs]), rho["lr"], rho["grad"])
    for k, r in enumerate(runs):
        adam.load(k, r.learner.optimizer, r.learner.net)
    return net, target, adam


def _copy_net(stacked: StackedQNetwork, k: int, solo: torch.nn.Module, to_solo: bool) -> None:
    with torch.no_grad():
        for name in stacked.layer_names:
            key = name.replace(".", "_")
            layer = solo.get_submodule(name)
            pairs = [(raw_weight(layer), stacked.weight[key]), (layer.bias, stacked.bias[key])]
            for solo_t, stacked_t in pairs:
                (solo_t if to_solo else stacked_t[k]).copy_(stacked_t[k] if to_solo else solo_t)
            estimator = _estimator(solo, name)
            if estimator is not None:
                for kind in ("u", "v", "sigma"):
                    solo_t, stacked_t = getattr(estimator, kind), stacked.buffer(kind, name)
                    (solo_t if to_solo else stacked_t[k]).copy_(stacked_t[k] if to_solo else solo_t)


def to_solo(k: int, run: ValueRun, net: StackedQNetwork, target: StackedQNetwork, adam: StackedAdam) -> None:
    """Member ``k``'s state into its solo networks and optimiser (before it logs, evaluates or checkpoints)."""
    _copy_net(net, k, run.learner.net, True)
    _copy_net(target, k, run.learner.target, True)
    adam.export(k, run.learner.optimizer, run.learner.net)


def sigma_from_solo(k: int, run: ValueRun, net: StackedQNetwork) -> None:
    """The sigma buffers an evaluation's passes set in the solo network, back into the stack."""
    with torch.no_grad():
        for name in net.spectral:
            estimator = _estimator(run.learner.net, name)
            if estimator is not None:
                net.buffer("sigma", name)[k].copy_(estimator.sigma)


def copy_target(net: StackedQNetwork, target: StackedQNetwork, mask: torch.Tensor) -> None:
    """target <- online for the members in ``mask`` (weights and SN state), as ``load_state_dict`` does."""
    with torch.no_grad():
        online = dict(net.named_parameters()) | dict(net.named_buffers())
        for name, value in list(target.named_parameters()) + list(target.named_buffers()):
            source = online[name]
            if value.dim() and value.shape[0] == net.members and value.dtype == source.dtype:
                keep = mask.to(value.device).view(-1, *([1] * (value.dim() - 1)))
                value.copy_(torch.where(keep, source, value))
