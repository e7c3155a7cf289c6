"""Spectral normalisation of chosen layers, and track-only sigma estimation.

For a weight W with top singular value sigma(W), estimated by power iteration with persistent
u, v buffers (no gradient through u, v):

    sigma = u^T W v,   W_used = W / (sigma / k)          (only shrink: W / max(sigma / k, 1))

Conv layers use either the reshaped kernel (out x in*kh*kw, as PyTorch's built-in) or the true
operator norm of the strided convolution at the layer's input size (power iteration with
conv2d / conv_transpose2d).  A track-only layer runs the same estimator and leaves its weight
untouched, so its outputs are bit-identical to the plain network.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from rlsmooth.config.sections import SpectralConfig
from rlsmooth.pieces.member_ops import solo_linear
from rlsmooth.pieces.networks import layer_input_shapes, select_layers


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.flatten(), dim=0, eps=1e-12).view_as(x)


def sn_divisor(sigma: torch.Tensor, k: float, only_shrink: bool) -> torch.Tensor:
    """What SN divides a weight by: s = sigma / k, or max(sigma / k, 1) with only-shrink."""
    scale = sigma / k
    return scale.clamp_min(1.0) if only_shrink else scale


def _sigma_step(matrix: torch.Tensor, v: torch.Tensor, k: float, only_shrink: bool):
    """Second half of a power-iteration step and the divisor: (sigma = ||W v||, u = W v / sigma, s, free).

    s = :func:`sn_divisor`; ``free`` is 1 where s depends on sigma and 0 where only-shrink clamps it
    (a device tensor: no host sync).
    """
    wv = matrix @ v
    sigma = wv.norm()
    u = wv / sigma.clamp_min(1e-12)
    scale = sn_divisor(sigma, k, only_shrink)
    free = (sigma / k >= 1.0).to(scale.dtype) if only_shrink else torch.ones_like(scale)
    return sigma, u, scale, free


class _DivideBySigma(torch.autograd.Function):
    """W -> W / s with s = sigma / k (only shrink: max(s, 1)), sigma = ||W v|| = u^T W v, u = W v / ||W v||.

    The same maths as autograd through ``weight / (u^T W v / k)``, with a backward of three passes
    over W instead of about six: dW = g / s + (dL/dsigma) u v^T, with
    dL/dsigma = -<g, W> / (s^2 k) (0 where only-shrink clamps s at 1).
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, v: torch.Tensor, k: float, only_shrink: bool):
        sigma, u, scale, free = _sigma_step(weight.flatten(1), v, k, only_shrink)
        ctx.save_for_backward(weight, u, v, scale, free)
        ctx.k = k
        ctx.mark_non_differentiable(u)
        return weight * scale.reciprocal(), sigma, u   # multiplying is cheaper than dividing a big tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor, grad_sigma: torch.Tensor, grad_u: torch.Tensor):
        weight, u, v, scale, free = ctx.saved_tensors
        grad_weight = grad * scale.reciprocal()
        d_sigma = grad_sigma if grad_sigma is not None else torch.zeros_like(scale)
        d_sigma = d_sigma - free * torch.dot(grad.flatten(), weight.flatten()) / (scale * scale * ctx.k)
        grad_weight.flatten(1).addr_(u * d_sigma, v)
        return grad_weight, None, None, None


class _SpectralLinear(torch.autograd.Function):
    """y = (x W^T) / s + b with s = sigma / k (only shrink: max(s, 1)), sigma = ||W v||, u = W v / ||W v||.

    The normalisation is applied to the (batch x out) output instead of the (out x in) weight,
    which is the same function; the backward then touches W once more than a plain linear layer
    (the rank-1 term dW += (dL/dsigma) u v^T), and dL/dsigma = -<g_y, x W^T> / (s^2 k) is cheap.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, v, k: float, only_shrink: bool):
        sigma, u, scale, free = _sigma_step(weight, v, k, only_shrink)
        z = x @ weight.t()
        y = z * scale.reciprocal()
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(x, weight, u, v, scale, z, free)
        ctx.k, ctx.has_bias = k, bias is not None
        ctx.mark_non_differentiable(u)
        return y, sigma, u

    @staticmethod
    def backward(ctx, grad_y, grad_sigma, grad_u):
        x, weight, u, v, scale, z, free = ctx.saved_tensors
        grad_z = grad_y * scale.reciprocal()
        grad_x = grad_z @ weight
        grad_weight = grad_z.t() @ x
        d_sigma = grad_sigma if grad_sigma is not None else torch.zeros_like(scale)
        d_sigma = d_sigma - free * (grad_y * z).sum() / (scale * scale * ctx.k)
        grad_weight.addr_(u * d_sigma, v)
        grad_bias = grad_y.sum(0) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias, None, None, None


def _spectral_linear_forward(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Forward of a spectrally normalised Linear: fused output-side path on training passes."""
    estimator = layer.parametrizations.weight[0]
    with torch.autocast(x.device.type, enabled=False):   # a normalised layer stays float32 under bf16
        if estimator.training and torch.is_grad_enabled():
            return estimator.linear_training_pass(x.float(), layer.parametrizations.weight.original, layer.bias)
        return solo_linear(x.float(), layer.weight, layer.bias)


class SpectralNorm(nn.Module):
    """Parametrisation of ``layer.weight``; ``sigma`` holds the latest estimate (a buffer)."""

    def __init__(self, layer: nn.Module, *, normalise: bool, k: float = 1.0, only_shrink: bool = False,
                 power_iterations: int = 1, grad_through_sigma: bool = True,
                 conv_input_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.normalise = normalise
        self.k = k
        self.only_shrink = only_shrink
        self.power_iterations = power_iterations
        self.grad_through_sigma = grad_through_sigma
        weight = layer.weight.detach()
        self.operator = conv_input_shape is not None
        if self.operator:
            assert isinstance(layer, nn.Conv2d)
            self.stride, self.padding = layer.stride, layer.padding
            v = torch.randn(1, *conv_input_shape, device=weight.device)
            out = F.conv2d(v, weight, stride=self.stride, padding=self.padding)
            in_h, in_w = conv_input_shape[1:]
            k_h, k_w = weight.shape[2:]
            self.output_padding = (
                in_h - ((out.shape[2] - 1) * self.stride[0] - 2 * self.padding[0] + k_h),
                in_w - ((out.shape[3] - 1) * self.stride[1] - 2 * self.padding[1] + k_w),
            )
            u = torch.randn_like(out)
        else:
            matrix = weight.flatten(1)
            u = torch.randn(matrix.shape[0], device=weight.device)
            v = torch.randn(matrix.shape[1], device=weight.device)
        self.register_buffer("u", _normalize(u))
        self.register_buffer("v", _normalize(v))
        self.register_buffer("sigma", torch.ones((), device=weight.device))
        self._cache: torch.Tensor | None = None   # W / sigma for passes that change nothing
        self._cache_key: tuple | None = None
        with torch.no_grad():
            self._power_iterate(weight, 50)   # start from a (nearly) converged estimate
            self.sigma.copy_(self._sigma(weight))

    # W v and W^T u for the two kinds of operator
    def _matvec(self, weight: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.operator:
            return F.conv2d(v, weight, stride=self.stride, padding=self.padding)
        return weight.flatten(1) @ v

    def _matvec_t(self, weight: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if self.operator:
            return F.conv_transpose2d(u, weight, stride=self.stride, padding=self.padding,
                                      output_padding=self.output_padding)
        return weight.flatten(1).t() @ u

    def _power_iterate(self, weight: torch.Tensor, iterations: int) -> None:
        u, v = self.u, self.v
        for _ in range(iterations):
            v = _normalize(self._matvec_t(weight, u))
            u = _normalize(self._matvec(weight, v))
        self.u.copy_(u)
        self.v.copy_(v)

    def _sigma(self, weight: torch.Tensor) -> torch.Tensor:
        return (self.u * self._matvec(weight, self.v)).sum()

    def _normalised(self, weight: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return weight / sn_divisor(sigma, self.k, self.only_shrink)

    def linear_training_pass(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """A normalised Linear layer's training forward pass: power-iteration step, then the fused op."""
        with torch.no_grad():
            if self.power_iterations > 1:
                self._power_iterate(weight, self.power_iterations - 1)
            self.v.copy_(_normalize(self._matvec_t(weight, self.u)))
        flat = x.reshape(-1, x.shape[-1])
        y, sigma, u = _SpectralLinear.apply(flat, weight, bias, self.v, self.k, self.only_shrink)
        with torch.no_grad():
            self.u.copy_(u)
            self.sigma.copy_(sigma)
        self._cache_key = None
        return y.reshape(*x.shape[:-1], y.shape[-1])

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):   # power iteration and sigma stay float32
            return self._forward(weight)

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            # a training forward pass: advance u, v, then sigma = u^T W v (W v computed once, with grad)
            with torch.no_grad():
                if self.power_iterations > 1:
                    self._power_iterate(weight, self.power_iterations - 1)
                self.v.copy_(_normalize(self._matvec_t(weight, self.u)))
                if self.normalise and self.grad_through_sigma and not self.operator:
                    with torch.enable_grad():
                        used, sigma, u = _DivideBySigma.apply(weight, self.v, self.k, self.only_shrink)
                    self.u.copy_(u)
                    self.sigma.copy_(sigma)
                    self._cache_key = None
                    return used
            wv = self._matvec(weight if self.grad_through_sigma and self.normalise else weight.detach(), self.v)
            with torch.no_grad():
                self.u.copy_(_normalize(wv.detach()))
            sigma = (self.u * wv).sum()
            self.sigma.copy_(sigma.detach())
            self._cache_key = None
            return self._normalised(weight, sigma) if self.normalise else weight
        if not self.normalise:
            return weight   # track-only: sigma is refreshed by training passes, outputs stay bit-identical
        if torch.is_grad_enabled():   # e.g. input-gradient diagnostics: no caching across graphs
            sigma = self._sigma(weight if self.grad_through_sigma else weight.detach())
            self.sigma.copy_(sigma.detach())
            return self._normalised(weight, sigma)
        # acting and target passes: W / sigma(u, v, W) is cached until W, u or v change in place
        key = (weight._version, self.u._version, self.v._version, weight.data_ptr())
        if key != self._cache_key or self._cache is None:
            sigma = self._sigma(weight)
            self.sigma.copy_(sigma)
            self._cache = self._normalised(weight, sigma)
            self._cache_key = (weight._version, self.u._version, self.v._version, weight.data_ptr())
        return self._cache


def apply_spectral(model: nn.Module, cfg: SpectralConfig, obs_shape: tuple[int, ...],
                   extra_track: list[str] = ()) -> dict[str, SpectralNorm]:
    """Register SN (``cfg.layers``) and track-only estimators (``cfg.track`` + ``extra_track``).

    Returns {layer name: estimator}, in forward order; raises ConfigError for a bad selector.
    """
    normalised = select_layers(model, cfg.layers, "spectral.layers")
    tracked = select_layers(model, cfg.track, "spectral.track")
    wanted = [n for n, _ in model.named_modules() if n in set(normalised) | set(tracked) | set(extra_track)]
    shapes = layer_input_shapes(model, obs_shape) if cfg.conv_norm == "operator" else {}
    estimators: dict[str, SpectralNorm] = {}
    for name in wanted:
        layer = model.get_submodule(name)
        conv_shape = shapes[name] if isinstance(layer, nn.Conv2d) and cfg.conv_norm == "operator" else None
        estimator = SpectralNorm(layer, normalise=name in normalised, k=cfg.k, only_shrink=cfg.only_shrink,
                                 power_iterations=cfg.power_iterations,
                                 grad_through_sigma=cfg.grad_through_sigma, conv_input_shape=conv_shape)
        parametrize.register_parametrization(layer, "weight", estimator)
        if isinstance(layer, nn.Linear) and estimator.normalise and cfg.grad_through_sigma:
            layer.forward = types.MethodType(_spectral_linear_forward, layer)
        estimators[name] = estimator
    return estimators


def raw_weight(layer: nn.Module) -> torch.Tensor:
    """The trainable weight of a layer, whether or not it is parametrised."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


def sigma_metrics(estimators: dict[str, SpectralNorm]) -> dict[str, float]:
    """``spectral/sigma/<layer>`` for every estimator (one host sync for all of them)."""
    if not estimators:
        return {}
    values = torch.stack([e.sigma for e in estimators.values()]).cpu().tolist()
    return {f"spectral/sigma/{name}": v for name, v in zip(estimators, values)}
