import torch
torch.set_num_threads(1)
CL = torch.channels_last
def check(B, C, O, H, ks, dtype, stride=1):
    gen = torch.Generator().manual_seed(0)
    Kmax = 16
    Ho = (H - ks) // stride + 1
    xs = torch.randn(Kmax, B, C, H, H, generator=gen).to(dtype)
    gos = torch.randn(Kmax, B, O, Ho, Ho, generator=gen).to(dtype)
    ws = torch.randn(Kmax, O, C, ks, ks, generator=gen).to(dtype)
    st = [stride, stride]
    ref = [torch.ops.aten.convolution_backward(gos[k].contiguous(memory_format=CL), xs[k].contiguous(memory_format=CL), ws[k], [O], st, [0, 0], [1, 1], False, [0, 0], 1, [True, False, False])[0] for k in range(Kmax)]
    ok = True
    for K in (1, 2, 3, 5, 9, 16):
        go = gos[:K].transpose(0, 1).reshape(B, K * O, Ho, Ho).contiguous(memory_format=CL)
        x = xs[:K].transpose(0, 1).reshape(B, K * C, H, H).contiguous(memory_format=CL)
        gx = torch.ops.aten.convolution_backward(go, x, ws[:K].reshape(K * O, C, ks, ks), [K * O], st, [0, 0], [1, 1], False, [0, 0], K, [True, False, False])[0]
        g = gx.reshape(B, K, C, H, H).transpose(0, 1)
        ok &= all(torch.equal(g[k], ref[k]) for k in range(K))
    print(B, C, O, H, ks, stride, dtype, ok)
for dtype in (torch.float32, torch.bfloat16):
    check(32, 32, 24, 6, 3, dtype)
    check(32, 16, 16, 10, 3, dtype)
    check(32, 4, 16, 10, 3, dtype)
    check(1, 32, 32, 8, 3, dtype)
    check(32, 32, 64, 20, 4, dtype, 2)   # Nature conv2
    check(32, 64, 64, 9, 3, dtype)       # Nature conv3
