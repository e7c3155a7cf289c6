"""The member-batched layers against torch's own layers: values and gradients per member, the same
numbers for any member count."""
import pytest
import torch
import torch.nn.functional as F

from rlsmooth.pieces import member_ops


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_f_linear_per_member_with_gradients(with_bias):
    gen = torch.Generator().manual_seed(0)
    k, b, i, o = 3, 5, 7, 4
    x = torch.randn(k, b, i, generator=gen, requires_grad=True)
    w = torch.randn(k, o, i, generator=gen, requires_grad=True)
    bias = torch.randn(k, o, generator=gen, requires_grad=True) if with_bias else None
    up = torch.randn(k, b, o, generator=gen)
    (member_ops.linear(x, w, bias) * up).sum().backward()
    for m in range(k):
        xm, wm = x.detach()[m].clone().requires_grad_(), w.detach()[m].clone().requires_grad_()
        bm = bias.detach()[m].clone().requires_grad_() if with_bias else None
        y = F.linear(xm, wm, bm)
        (y * up[m]).sum().backward()
        assert torch.allclose(member_ops.linear(x.detach(), w.detach(), None if bias is None else bias.detach())[m], y,
                              atol=1e-6)
        assert torch.allclose(x.grad[m], xm.grad, atol=1e-6) and torch.allclose(w.grad[m], wm.grad, atol=1e-6)
        if with_bias:
            assert torch.allclose(bias.grad[m], bm.grad, atol=1e-6)


def test_linear_and_conv_give_each_member_the_same_numbers_at_any_member_count():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 8, 4, 10, 10, generator=gen)
    cw, cb = torch.randn(5, 6, 4, 3, 3, generator=gen), torch.randn(5, 6, generator=gen)
    lw, lb = torch.randn(5, 3, 6 * 8 * 8, generator=gen), torch.randn(5, 3, generator=gen)
    up = torch.randn(5, 8, 3, generator=gen)

    def grads(members):
        params = [t[members].clone().requires_grad_() for t in (x, cw, cb, lw, lb)]
        h = torch.relu(member_ops.conv2d(params[0], params[1], params[2], (1, 1), (0, 0)))
        out = member_ops.linear(h.reshape(len(members), 8, -1), params[3], params[4])
        (out * up[members]).sum().backward()
        return out.detach(), [p.grad for p in params]
    out_all, grads_all = grads(list(range(5)))
    for m in range(5):
        out_one, grads_one = grads([m])
        assert torch.equal(out_all[m], out_one[0])   # bit for bit
        assert all(torch.equal(g_all[m], g_one[0]) for g_all, g_one in zip(grads_all, grads_one))
