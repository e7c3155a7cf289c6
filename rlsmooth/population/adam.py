"""Adam over stacked member parameters, each member stepping as its solo ``torch.optim.Adam`` would.

Per member: a learning rate and epsilon; the rho-scaling modes as a learning-rate divisor (``lr``)
and a gradient divisor (``grad``) of the rho layers' weights; global-norm gradient clipping; and a
mask, so a member that does not update this step (or has finished) keeps its parameters and state.
The step itself is torch's fused Adam kernel (the solo runs' default) over each member's slices of
the stacked tensors, one call for all members that share a learning rate and epsilon.
"""
from __future__ import annotations

import torch

from rlsmooth.population.stacked import StackedQNetwork

BETAS = (0.9, 0.999)   # torch.optim.Adam's defaults, which every rlsmooth Adam uses


class StackedAdam:
    def __init__(self, net: StackedQNetwork, lr: torch.Tensor, eps: torch.Tensor, grad_clip: torch.Tensor,
                 rho_lr: dict[str, torch.Tensor], rho_grad: dict[str, torch.Tensor]):
        self.net = net
        self.params = list(net.weight.values()) + list(net.bias.values())
        self.names = [("weight", n) for n in net.weight] + [("bias", n) for n in net.bias]
        self.lr, self.eps, self.grad_clip = lr, eps, grad_clip          # (K,) each
        self.rho_lr, self.rho_grad = rho_lr, rho_grad                    # {layer: (K,) bool}
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.params]
        # one step count per member, as the solo optimiser's state holds it (float32, on the parameters' device)
        self.step_counts = [torch.zeros((), dtype=torch.float32, device=self.params[0].device)
                            for _ in range(net.members)]
        # the per-member settings every step reads, as Python values once (not a host read per member per step)
        self.lr_floats, self.eps_floats = [float(x) for x in lr], [float(x) for x in eps]
        self.lr_scaled = [next((n for n in rho_lr if n.replace(".", "_") == key), None) if kind == "weight" else None
                          for kind, key in self.names]   # each parameter's rho-lr layer, or None
        self.lr_scaled_on = {n: [bool(x) for x in on] for n, on in rho_lr.items()}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _per_member(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.view(-1, *([1] * (like.dim() - 1)))

    def _scale_rho_grads(self) -> None:
        for layer, on in self.rho_grad.items():
            grad = self.net.weight[layer.replace(".", "_")].grad
            if grad is not None and bool(on.any()):
                divisor = torch.where(on.to(grad.device), self.net.rho_divisor(layer), torch.ones(()).to(grad.device))
                grad.div_(self._per_member(divisor, grad))

    def _clip(self) -> None:
        """torch.nn.utils.clip_grad_norm_ per member (members with grad_clip 0 are left alone)."""
        if not bool((self.grad_clip > 0).any()):
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)       # (K,)
        coef = (self.grad_clip / (norms + 1e-6)).clamp(max=1.0)
        coef = torch.where(self.grad_clip > 0, coef, torch.ones_like(coef))
        for g in grads:
            g.mul_(self._per_member(coef, g))

    def _rho_metrics(self, members: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        """Each member's ``optim/*`` of its rho layers, as its solo ``RhoScaler.step_metrics`` gives
        them (after rho scaling, before clipping)."""
        out: dict[int, dict[str, torch.Tensor]] = {k: {} for k in members}
        for layer, on in self.net.rho_on.items():
            grad = self.net.weight[layer.replace(".", "_")].grad
            grad_divisor, lr_divisor = self.net.rho_divisor(layer), self.net.rho_divisor(layer, lr=True)   # (K,) each
            # the lr and grad masks hold a layer only where some member scales it that way
            by_lr, by_grad = self.rho_lr.get(layer), self.rho_grad.get(layer)
            for k in members:
                if not bool(on[k]):
                    continue
                grad_scaled = (by_grad is not None and bool(by_grad[k])) or bool(self.net.divout[k])
                rho = grad_divisor[k] if grad_scaled else lr_divisor[k]
                lr = float(self.lr[k])
                lr = lr_divisor[k].reciprocal() * lr if by_lr is not None and bool(by_lr[k]) else torch.tensor(lr)
                out[k].update({f"optim/rho/{layer}": rho, f"optim/lr/{layer}": lr})
                if grad is not None:
                    out[k][f"optim/grad_norm/{layer}"] = torch.linalg.vector_norm(grad[k].detach())
        return out

    def step(self, mask: torch.Tensor) -> dict[int, dict[str, torch.Tensor]]:
        """One Adam step for the members in ``mask`` (K,) bool, after ``backward``; returns each
        stepped member's rho-layer metrics (see :meth:`_rho_metrics`)."""
        self._scale_rho_grads()
        members = mask.nonzero().flatten().tolist()
        metrics = self._rho_metrics(members)
        self._clip()
        for k in members:
            self.step_counts[k] += 1
        groups: dict[tuple, list[list[torch.Tensor]]] = {}
        for i, (p, layer) in enumerate(zip(self.params, self.lr_scaled)):
            if p.grad is None:
                continue
            slices = (p.detach().unbind(), p.grad.unbind(), self.exp_avg[i].unbind(), self.exp_avg_sq[i].unbind())
            divisors = self.net.rho_divisor(layer, lr=True) if layer is not None else None
            for k in members:
                lr = self.lr_floats[k]
                if layer is not None and self.lr_scaled_on[layer][k]:
                    # a tensor lr, as the solo fused step has, computed as the solo's ``base_lr / divisor`` is
                    # (Python's float / tensor is reciprocal(tensor) * float)
                    lr = divisors[k].reciprocal() * lr
                group = groups.setdefault((id(lr) if torch.is_tensor(lr) else lr, self.eps_floats[k]),
                                          [[], [], [], [], [], lr])
                for slot, tensor in zip(group, (*(member[k] for member in slices), self.step_counts[k])):
                    slot.append(tensor)
        b1, b2 = BETAS
        for (_, eps), (params, grads, m, v, steps, lr) in groups.items():
            torch._fused_adam_(params, grads, m, v, [], steps, lr=lr, beta1=b1, beta2=b2, weight_decay=0.0, eps=eps,
                               amsgrad=False, maximize=False)
        return metrics

    @property
    def steps(self) -> torch.Tensor:
        return torch.stack(self.step_counts)

    # -- a member's state as its solo torch.optim.Adam holds it --------------------------------------
    def _slot(self, solo_name: str) -> int:
        layer = solo_name.split(".parametrizations")[0] if ".parametrizations." in solo_name else solo_name.rsplit(".", 1)[0]
        kind = "bias" if solo_name.endswith("bias") else "weight"
        return self.names.index((kind, layer.replace(".", "_")))

    def export(self, k: int, optimizer: torch.optim.Optimizer, solo_net: torch.nn.Module) -> None:
        """Write member ``k``'s moments and step count into its solo optimizer (for its checkpoint)."""
        names = {id(p): n for n, p in solo_net.named_parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                i = self._slot(names[id(p)])
                optimizer.state[p] = {"step": self.step_counts[k].clone(),
                                      "exp_avg": self.exp_avg[i][k].clone(), "exp_avg_sq": self.exp_avg_sq[i][k].clone()}

    def load(self, k: int, optimizer: torch.optim.Optimizer, solo_net: torch.nn.Module) -> None:
        """Take member ``k``'s moments and step count from its solo optimizer (a resumed run)."""
        names = {id(p): n for n, p in solo_net.named_parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                state = optimizer.state.get(p)
                if not state:
                    continue
                i = self._slot(names[id(p)])
                self.exp_avg[i][k] = state["exp_avg"].to(self.exp_avg[i].device)
                self.exp_avg_sq[i][k] = state["exp_avg_sq"].to(self.exp_avg_sq[i].device)
                self.step_counts[k].fill_(float(state["step"]))
