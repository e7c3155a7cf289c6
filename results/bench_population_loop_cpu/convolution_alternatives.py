import time, torch, torch.nn.functional as F
torch.set_num_threads(1)
K, B, C, O, H = 9, 32, 32, 32, 8
x = torch.randn(B, K * C, H, H).contiguous(memory_format=torch.channels_last)
w = torch.randn(K * O, C, 3, 3)
go = torch.randn(B, K * O, H - 2, H - 2).contiguous(memory_format=torch.channels_last)
xs = [torch.randn(B, C, H, H).contiguous(memory_format=torch.channels_last) for _ in range(K)]
gos = [torch.randn(B, O, H - 2, H - 2).contiguous(memory_format=torch.channels_last) for _ in range(K)]
ws = [torch.randn(O, C, 3, 3) for _ in range(K)]
def grouped():
    torch.ops.aten.convolution_backward(go, x, w, [K * O], [1, 1], [0, 0], [1, 1], False, [0, 0], K, [True, True, True])
def per():
    for k in range(K):
        torch.ops.aten.convolution_backward(gos[k], xs[k], ws[k], [O], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, True])
def per_w_only():
    for k in range(K):
        torch.ops.aten.convolution_backward(gos[k], xs[k], ws[k], [O], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True])
def grouped_x_only():
    torch.ops.aten.convolution_backward(go, x, w, [K * O], [1, 1], [0, 0], [1, 1], False, [0, 0], K, [True, False, False])
# im2col weight grad: (K, B*L, C*9)^T @ (K, B*L, O)
def unfold_w():
    cols = F.unfold(x.contiguous(), 3)            # (B, K*C*9, L)
    L = cols.shape[-1]
    cols = cols.view(B, K, C * 9, L).permute(1, 2, 0, 3).reshape(K, C * 9, B * L)
    g = go.view(B, K, O, L).permute(1, 0, 3, 2).reshape(K, B * L, O)
    return torch.bmm(cols, g)
def fwd():
    F.conv2d(x, w, None, groups=K)
for f in (grouped, per, per_w_only, grouped_x_only, unfold_w, fwd):
    for _ in range(5): f()
    res = []
    for r in range(5):
        t = time.perf_counter()
        for _ in range(20): f()
        res.append((time.perf_counter() - t) / 20 * 1e3)
    print(f.__name__, round(min(res), 3), "ms")
print("---- tricks")
def gx_fwd():
    # grad_x = grouped conv of padded go with flipped, (C,O)-transposed weights
    wt = w.view(K, O, C, 3, 3).transpose(1, 2).flip(-1, -2).reshape(K * C, O, 3, 3)
    return F.conv2d(F.pad(go, (2, 2, 2, 2)), wt, None, groups=K)
def gw_fwd(fmt=torch.channels_last):
    xi = x.view(B, K, C, H, H).permute(2, 1, 0, 3, 4).reshape(C, K * B, H, H).contiguous(memory_format=fmt)
    gi = go.view(B, K, O, H - 2, H - 2).permute(1, 2, 0, 3, 4).reshape(K * O, B, H - 2, H - 2)
    return F.conv2d(xi, gi, None, groups=K)   # (C, K*O, 3, 3)
def gw_fwd_nchw():
    return gw_fwd(torch.contiguous_format)
# check values
ref = torch.ops.aten.convolution_backward(go, x, w, [K * O], [1, 1], [0, 0], [1, 1], False, [0, 0], K, [True, True, True])
print("gx err", (gx_fwd() - ref[0]).abs().max().item(), "gw err", (gw_fwd().permute(1, 0, 2, 3) - ref[1]).abs().max().item())
for f in (gx_fwd, gw_fwd, gw_fwd_nchw):
    for _ in range(5): f()
    res = []
    for r in range(5):
        t = time.perf_counter()
        for _ in range(20): f()
        res.append((time.perf_counter() - t) / 20 * 1e3)
    print(f.__name__, round(min(res), 3), "ms")
