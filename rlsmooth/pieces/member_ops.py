"""Convolution and linear layers over a leading member dimension, the same numbers for any number of members.

A solo network calls these with one member (``x[None]``) and a population's stacked network with K,
so a population member computes exactly what its solo run computes, bit for bit: every kernel used
here gives each member's result independently of how many members share the call.

* Linear layers are one batched matrix product (``baddbmm``) forward and two (``bmm``) backward, all
  member-count invariant; the weight gradient comes out in the weight's own layout.
* A convolution's forward is one grouped convolution over the members in channels-last layout
  (member-count invariant, and about 2x faster than NCHW on the CPU).  Its backward is not: a grouped
  convolution's weight gradient reduces over the batch in an order that depends on the group count.
  So the backward runs torch's convolution backward once per member, on that member's slices laid
  out as a solo run's are.  It costs a few per-member calls and keeps the members exact.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHANNELS_LAST = torch.channels_last


def compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype a member layer computes in: autocast's (loop.precision: bf16) where it is on, else the
    weight's.  The layers run with autocast off inside and return gradients in each input's own dtype
    (float32 master weights)."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype


class _MemberConv2d(torch.autograd.Function):
    """x (K, B, C, H, W), weight (K, O, C, kh, kw), bias (K, O) -> (K, B, O, H', W')."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        k, b, c = x.shape[:3]
        device, dtype = x.device.type, compute_dtype(x, weight)
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)
        x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
        with torch.autocast(device, enabled=False):
            out = F.conv2d(x.transpose(0, 1).reshape(b, k * c, *x.shape[3:]).contiguous(memory_format=CHANNELS_LAST),
                           weight.reshape(k * weight.shape[1], *weight.shape[2:]), bias.reshape(-1),
                           stride=stride, padding=padding, groups=k)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return out.reshape(b, k, weight.shape[1], *out.shape[2:]).transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        grad_out = grad_out.to(weight.dtype)
        # in the input's own layout, which is the previous layer's activation's: its ReLU backward then
        # reads both tensors in one order (mixed layouts make it several times slower)
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.empty_like(weight, memory_format=torch.contiguous_format)
        grad_b = torch.empty(weight.shape[:2], dtype=weight.dtype, device=weight.device)
        with torch.autocast(x.device.type, enabled=False):
            for k in range(x.shape[0]):   # one solo-shaped backward per member: see the module docstring
                gx, gw, gb = torch.ops.aten.convolution_backward(
                    grad_out[k].contiguous(memory_format=CHANNELS_LAST), x[k].contiguous(memory_format=CHANNELS_LAST),
                    weight[k], [weight.shape[1]], ctx.stride, ctx.padding, [1, 1], False, [0, 0], 1,
                    [need_x, True, True])
                if need_x:
                    grad_x[k] = gx
                grad_w[k] = gw
                grad_b[k] = gb
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        return (grad_x.to(x_dtype) if need_x else None), grad_w.to(w_dtype), grad_b.to(b_dtype), None, None


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: tuple, padding: tuple) -> torch.Tensor:
    """Each member's ``F.conv2d(x[k], weight[k], bias[k])``, stacked: (K, B, O, H', W')."""
    return _MemberConv2d.apply(x, weight, bias, tuple(stride), tuple(padding))


def compute(precision: str, device: torch.device):
    """The autocast region of a network's forward pass: bfloat16 for ``loop.precision: bf16``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def full_precision(device: torch.device):
    """A region that stays float32 inside a bf16 forward pass (spectral normalisation, sigma, rho)."""
    return torch.autocast(device.type, enabled=False)


class _MemberLinear(torch.autograd.Function):
    """x (K, B, I), weight (K, O, I), bias (K, O) or None -> (K, B, O), with a backward that writes the
    weight gradient in the weight's own (K, O, I) layout: autograd's backward of ``x @ weight.T`` gives it
    transposed, and accumulating it into ``weight.grad`` then costs a strided copy of the whole weight."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        device, dtype = x.device.type, compute_dtype(x, weight)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        x, weight = x.to(dtype), weight.to(dtype)
        with torch.autocast(device, enabled=False):
            out = (torch.bmm(x, weight.transpose(1, 2)) if bias is None
                   else torch.baddbmm(bias.to(dtype).unsqueeze(1), x, weight.transpose(1, 2)))
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        grad_out = grad_out.to(weight.dtype)
        with torch.autocast(x.device.type, enabled=False):
            grad_x = torch.bmm(grad_out, weight).to(x_dtype) if ctx.needs_input_grad[0] else None
            grad_w = torch.bmm(grad_out.transpose(1, 2), x).to(w_dtype)
            grad_b = grad_out.sum(1).to(b_dtype) if b_dtype is not None else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Each member's ``x[k] @ weight[k].T + bias[k]``: x (K, B, I), weight (K, O, I), bias (K, O)."""
    return _MemberLinear.apply(x, weight, bias)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, state dict and parametrisations) computed as a one-member
    :func:`conv2d`, so that a population member's convolution gives the same numbers."""

    def _conv_forward(self, input, weight, bias):
        if self.groups != 1 or self.padding_mode != "zeros" or self.dilation != (1, 1) or bias is None \
                or isinstance(self.padding, str):
            return super()._conv_forward(input, weight, bias)
        if input.dim() == 3:
            return conv2d(input[None, None], weight[None], bias[None], self.stride, self.padding)[0, 0]
        return conv2d(input[None], weight[None], bias[None], self.stride, self.padding)[0]


class Linear(nn.Linear):
    """``nn.Linear`` computed as a one-member :func:`linear` (see :class:`Conv2d`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return solo_linear(x, self.weight, self.bias)


def solo_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """One network's linear layer as a one-member :func:`linear` (any leading batch shape)."""
    flat = x.reshape(1, -1, x.shape[-1])
    y = linear(flat, weight[None], None if bias is None else bias[None])
    return y.reshape(*x.shape[:-1], weight.shape[0])
