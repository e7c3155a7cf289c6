import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import run_cli
from rlsmooth.training import checkpoint as ckpt
from rlsmooth.config.sections import NetworkConfig, OptimConfig, SpectralConfig
from rlsmooth.errors import ConfigError
from rlsmooth.pieces.networks import build_q_network, select_layers
from rlsmooth.pieces.optim import RhoScaler, build_optimizer
from rlsmooth.pieces.spectral import apply_spectral, raw_weight

OBS = (4, 84, 84)


def nature(seed=0, actions=4):
    torch.manual_seed(seed)
    return build_q_network(NetworkConfig(kind="nature"), "atari", OBS, actions)


def minatar_net(seed=0, actions=3, obs=(2, 10, 10)):
    torch.manual_seed(seed)
    return build_q_network(NetworkConfig(kind="minatar", hidden=[32], channels=[4]), "minatar", obs, actions)


def train_forward(net, obs, times):
    net.train()
    for _ in range(times):
        with torch.enable_grad():
            net(obs)


def test_layer_selection_by_name_and_index():
    net = nature()
    assert select_layers(net, [-2]) == ["fc"]
    assert select_layers(net, [-3]) == ["conv3"]
    assert select_layers(net, ["fc", "conv3"]) == ["conv3", "fc"]
    assert select_layers(net, "all") == ["conv1", "conv2", "conv3", "fc", "out"]
    assert select_layers(net, "none") == []
    with pytest.raises(ConfigError, match="conv1, conv2, conv3, fc, out"):
        select_layers(net, ["fc2"])
    with pytest.raises(ConfigError, match="out of range"):
        select_layers(net, [7])


@pytest.mark.parametrize("k", [1.0, 2.5])
def test_normalised_linear_layer_has_sigma_k(k):
    net = nature()
    apply_spectral(net, SpectralConfig(layers=["fc"], k=k, power_iterations=50), OBS)
    obs = torch.randint(0, 255, (2, *OBS), dtype=torch.uint8)
    train_forward(net, obs, 20)   # weights fixed: 1000 power-iteration steps converge
    effective = net.fc.weight.detach()
    assert torch.linalg.matrix_norm(effective, 2).item() == pytest.approx(k, rel=1e-3)
    sigma_raw = torch.linalg.matrix_norm(raw_weight(net.fc).detach(), 2).item()
    assert net.fc.parametrizations.weight[0].sigma.item() == pytest.approx(sigma_raw, rel=1e-3)


def test_kernel_norm_of_conv_matches_reshaped_matrix():
    net = nature()
    apply_spectral(net, SpectralConfig(layers=["conv2"], conv_norm="kernel", power_iterations=200), OBS)
    train_forward(net, torch.zeros(1, *OBS, dtype=torch.uint8), 5)
    w = raw_weight(net.conv2).detach()
    estimate = net.conv2.parametrizations.weight[0].sigma.item()
    assert estimate == pytest.approx(torch.linalg.matrix_norm(w.flatten(1), 2).item(), rel=1e-3)


def explicit_conv_matrix(weight, stride, padding, in_shape):
    """Columns: conv applied to each basis image (the conv is linear without bias)."""
    n = int(torch.tensor(in_shape).prod())
    basis = torch.eye(n).reshape(n, *in_shape)
    out = F.conv2d(basis, weight, stride=stride, padding=padding)
    return out.reshape(n, -1).t()


def test_conv_operator_norm_matches_explicit_convolution_matrix():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = conv
            self.obs_scale = 1.0

        def forward(self, x):
            return self.conv1(x.float())

    tiny = Tiny()
    in_shape = (2, 7, 7)
    est = apply_spectral(tiny, SpectralConfig(track=["conv1"], conv_norm="operator", power_iterations=5), in_shape)
    train_forward(tiny, torch.zeros(1, *in_shape), 50)
    matrix = explicit_conv_matrix(raw_weight(conv).detach(), 2, 1, in_shape)
    true_sigma = torch.linalg.matrix_norm(matrix, 2).item()
    assert est["conv1"].sigma.item() == pytest.approx(true_sigma, rel=1e-4)
    # the operator norm differs from the reshaped-kernel norm
    kernel_sigma = torch.linalg.matrix_norm(raw_weight(conv).detach().flatten(1), 2).item()
    assert abs(kernel_sigma - true_sigma) / true_sigma > 1e-3


def test_only_shrink_leaves_small_layer_unchanged():
    net = minatar_net()
    with torch.no_grad():
        w = net.fc.weight
        w.mul_(0.5 / torch.linalg.matrix_norm(w, 2))
    before = net.fc.weight.detach().clone()
    apply_spectral(net, SpectralConfig(layers=["fc"], only_shrink=True, power_iterations=100), (2, 10, 10))
    assert torch.allclose(net.fc.weight, before)
    # and a large layer is shrunk to sigma = k
    with torch.no_grad():
        raw_weight(net.fc).mul_(10.0)
    train_forward(net, torch.zeros(1, 2, 10, 10), 10)
    assert torch.linalg.matrix_norm(net.fc.weight.detach(), 2).item() == pytest.approx(1.0, rel=1e-3)


def test_track_only_is_bit_identical():
    plain = nature()
    tracked = copy.deepcopy(plain)
    est = apply_spectral(tracked, SpectralConfig(track="all", power_iterations=100), OBS)
    obs = torch.randint(0, 255, (3, *OBS), dtype=torch.uint8)
    train_forward(tracked, obs, 10)
    assert torch.equal(plain(obs), tracked(obs))
    assert set(est) == {"conv1", "conv2", "conv3", "fc", "out"}
    for name, e in est.items():
        true = torch.linalg.matrix_norm(raw_weight(tracked.get_submodule(name)).detach().flatten(1), 2).item()
        assert e.sigma.item() == pytest.approx(true, rel=1e-3)


def test_no_gradient_through_sigma_gives_G_over_sigma():
    net = minatar_net()
    apply_spectral(net, SpectralConfig(layers=["fc"], grad_through_sigma=False), (2, 10, 10))
    obs = torch.rand(4, 2, 10, 10)
    net.train()
    net(obs)  # one power-iteration step, then freeze u, v
    net.eval()
    sigma = net.fc.parametrizations.weight[0].sigma.item()
    w_used = net.fc.weight.detach().clone().requires_grad_(True)
    # independent computation: same forward with W_used as a leaf
    feats = torch.relu(net.conv1(obs)).flatten(1)
    out = net.out(torch.relu(F.linear(feats, w_used, net.fc.bias)))
    (g_used,) = torch.autograd.grad(out.square().sum(), w_used)
    net.zero_grad()
    net(obs).square().sum().backward()
    assert torch.allclose(raw_weight(net.fc).grad, g_used / sigma, rtol=1e-4, atol=1e-7)


def make_pair(mode, eps=1e-3, lr=1e-3, only_shrink=False, k=1.0):
    net = minatar_net(seed=1)
    est = apply_spectral(net, SpectralConfig(), (2, 10, 10), extra_track=["fc"])
    cfg = OptimConfig(lr=lr, eps=eps, rho_scaling=mode, rho_only_shrink=only_shrink)
    scaler = RhoScaler.from_config(cfg, k, net, est, ["fc"])
    return net, build_optimizer(list(net.parameters()), cfg, scaler), scaler, est


def test_grad_scaling_under_adam_equals_eps_times_rho():
    obs = torch.rand(8, 2, 10, 10)
    net, opt, scaler, est = make_pair("grad")
    reference = copy.deepcopy(net)
    rho = est["fc"].sigma.item()
    assert rho > 1.5  # a meaningful scale
    ref_opt = torch.optim.Adam([
        {"params": [p for n, p in reference.named_parameters() if n != "fc.parametrizations.weight.original"], "eps": 1e-3},
        {"params": [raw_weight(reference.fc)], "eps": 1e-3 * rho},
    ], lr=1e-3)
    reference.eval()   # keep rho fixed across the steps
    net.eval()
    for _ in range(3):
        opt.zero_grad()
        net(obs).square().mean().backward()
        scaler.before_step(opt)
        opt.step()
        ref_opt.zero_grad()
        reference(obs).square().mean().backward()
        ref_opt.step()
    assert torch.allclose(raw_weight(net.fc), raw_weight(reference.fc), rtol=1e-5, atol=1e-7)
    assert torch.allclose(net.conv1.weight, reference.conv1.weight)


def test_lr_scaling_groups_exactly_the_selected_layer():
    net, opt, scaler, est = make_pair("lr", lr=1e-3)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"base", "fc"}
    assert groups["fc"]["params"] == [raw_weight(net.fc)]
    assert all(p is not raw_weight(net.fc) for p in groups["base"]["params"])
    assert len(groups["base"]["params"]) == len(list(net.parameters())) - 1
    net(torch.rand(2, 2, 10, 10)).sum().backward()
    scaler.before_step(opt)
    assert float(groups["fc"]["lr"]) == pytest.approx(1e-3 / est["fc"].sigma.item())
    assert groups["base"]["lr"] == 1e-3


@pytest.mark.parametrize("only_shrink, k", [(True, 1.0), (True, 4.0), (True, 0.5), (False, 2.0)])
def test_clamped_and_unclamped_rho(only_shrink, k):
    """The paper's code: lr / max(1, rho) and grad / max(rho / k, 1); unclamped: rho / k for both."""
    net, opt, scaler, est = make_pair("lr+grad", lr=1e-3, only_shrink=only_shrink, k=k)
    sigma = float(torch.linalg.matrix_norm(raw_weight(net.fc).detach(), 2))
    assert est["fc"].sigma.item() == pytest.approx(sigma, rel=1e-3)
    lr_div = max(sigma, 1.0) if only_shrink else sigma / k
    grad_div = max(sigma / k, 1.0) if only_shrink else sigma / k
    net(torch.rand(2, 2, 10, 10)).sum().backward()
    grad = raw_weight(net.fc).grad.clone()
    scaler.before_step(opt)
    groups = {g["name"]: g for g in opt.param_groups}
    assert float(groups["fc"]["lr"]) == pytest.approx(1e-3 / lr_div, rel=1e-3)
    assert torch.allclose(raw_weight(net.fc).grad, grad / grad_div, rtol=1e-3)
    if k == 4.0:   # sigma / k < 1: the clamped gradient is left alone, the clamped lr is not
        assert grad_div == 1.0 and lr_div == pytest.approx(sigma) and sigma > 1.0


@pytest.mark.parametrize("mode", ["lr", "grad", "lr+grad", "divout"])
def test_optimizer_step_reports_the_rho_gradient_norm_and_learning_rate_it_applied(mode):
    """optim/rho, optim/grad_norm and optim/lr against sigma = ||W||_2 and the gradient computed apart."""
    from rlsmooth.pieces.optim import optimizer_step
    net, opt, scaler, est = make_pair(mode, lr=1e-3, only_shrink=True)
    sigma = float(torch.linalg.matrix_norm(raw_weight(net.fc).detach(), 2))
    assert sigma > 1.5   # the clamp max(rho, 1) does not hide the division
    obs = torch.rand(4, 2, 10, 10)
    net.eval()   # sigma stays as estimated
    reference = copy.deepcopy(net)
    reference(obs).square().mean().backward()
    raw_grad = raw_weight(reference.fc).grad
    metrics = optimizer_step(net, opt, scaler, net(obs).square().mean(), grad_clip=10.0)
    assert set(metrics) == {"optim/rho/fc", "optim/grad_norm/fc", "optim/lr/fc"}
    assert float(metrics["optim/rho/fc"]) == pytest.approx(sigma, rel=1e-3)
    # grad modes divide the gradient before the step; divout's arrives divided (the copy divides its output too)
    expected_norm = float(torch.linalg.vector_norm(raw_grad)) / (sigma if mode in ("grad", "lr+grad") else 1.0)
    assert float(metrics["optim/grad_norm/fc"]) == pytest.approx(expected_norm, rel=1e-3)
    assert float(metrics["optim/lr/fc"]) == pytest.approx(1e-3 / sigma if mode in ("lr", "lr+grad") else 1e-3, rel=1e-3)
    assert optimizer_step(net, opt, None, net(obs).sum(), 0.0) == {}   # no rho scaling: nothing to report


@pytest.mark.parametrize("k", [0.5, 2.0])
def test_clamped_lr_grad_adam_step_by_hand(k):
    """One Adam step of the clamped lr+grad mode at k != 1 against the update written out by hand:
    Adam's first step is -lr' * g' / (|g'| + eps) with g' = g / max(rho / k, 1), lr' = lr / max(rho, 1)."""
    net, opt, scaler, est = make_pair("lr+grad", eps=1e-3, lr=1e-2, only_shrink=True, k=k)
    rho = est["fc"].sigma.item()
    before = raw_weight(net.fc).detach().clone()
    obs = torch.rand(4, 2, 10, 10)
    net.eval()   # rho stays as estimated
    opt.zero_grad()
    net(obs).square().mean().backward()
    g = raw_weight(net.fc).grad.detach().clone() / max(rho / k, 1.0)
    scaler.before_step(opt)
    opt.step()
    expected = before - (1e-2 / max(rho, 1.0)) * g / (g.abs() + 1e-3)
    assert rho > 1.0 and abs(max(rho / k, 1.0) - max(rho, 1.0)) > 0.1   # the two rules differ here
    torch.testing.assert_close(raw_weight(net.fc).detach(), expected, rtol=1e-5, atol=1e-7)


def test_rho_presets_follow_the_papers_clamped_form():
    from rlsmooth.config.yaml_files import load_yaml
    from conftest import ROOT
    presets = sorted((ROOT / "configs" / "ablations").glob("*rho*.yaml"))
    assert presets
    for path in presets:
        assert load_yaml(path).get("optim", {}).get("rho_only_shrink", True) is True, path
    assert OptimConfig().rho_only_shrink is True


def test_divout_equals_sn_forward_for_bias_free_relu_net():
    sn_net = minatar_net(seed=2)          # biases are zero at init: a bias-free ReLU net
    div_net = copy.deepcopy(sn_net)
    est_sn = apply_spectral(sn_net, SpectralConfig(layers=["fc"]), (2, 10, 10))
    est_div = apply_spectral(div_net, SpectralConfig(), (2, 10, 10), extra_track=["fc"])
    est_div["fc"].load_state_dict(est_sn["fc"].state_dict())
    RhoScaler.from_config(OptimConfig(rho_scaling="divout", rho_only_shrink=False), 1.0, div_net, est_div,
                          ["fc"]).attach_output(div_net)
    obs = torch.rand(5, 2, 10, 10)
    sn_net.eval()
    div_net.eval()
    assert torch.allclose(sn_net(obs), div_net(obs), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(sn_net(obs), div_net.out(div_net.features(obs)))


def test_checkpoint_round_trip_restores_sigma_u_v(tmp_path):
    net = nature()
    apply_spectral(net, SpectralConfig(layers=["fc"], track=["conv3"]), OBS)
    train_forward(net, torch.randint(0, 255, (2, *OBS), dtype=torch.uint8), 4)
    ckpt.save_atomic({"step": 1, "net": net.state_dict()}, tmp_path / "c.pt")
    other = nature(seed=5)
    apply_spectral(other, SpectralConfig(layers=["fc"], track=["conv3"]), OBS)
    other.load_state_dict(ckpt.load(tmp_path / "c.pt")["net"])
    for name in ("fc", "conv3"):
        a = net.get_submodule(name).parametrizations.weight[0]
        b = other.get_submodule(name).parametrizations.weight[0]
        for buf in ("u", "v", "sigma"):
            assert torch.equal(getattr(a, buf), getattr(b, buf))


def test_agent_logs_sigma_and_normalises(chain_config, tmp_path):
    out = tmp_path / "sn"
    run_cli("train", chain_config("dqn", steps=400), "spectral.layers=[-2]", "spectral.track=[conv1]",
            "spectral.log_every=100", "--out", out, check=True)
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    sigma_rows = [r for r in rows if "spectral/sigma/fc" in r]
    assert len(sigma_rows) >= 3 and "spectral/sigma/conv1" in sigma_rows[-1]
    text = (out / "config.yaml").read_text()
    assert "normalised:\n    - fc" in text and "tracked:\n    - conv1" in text


@pytest.mark.parametrize("only_shrink, factor", [(False, 1.0), (True, 3.0), (True, 0.1)])
def test_fused_sigma_backward_matches_autograd(only_shrink, factor):
    """The custom backward against autograd through W / (u^T W v / k), in double precision."""
    from rlsmooth.pieces.spectral import _DivideBySigma
    torch.manual_seed(0)
    w = (torch.randn(7, 5, dtype=torch.float64) * factor).requires_grad_(True)
    v = torch.nn.functional.normalize(torch.randn(5, dtype=torch.float64), dim=0)
    g = torch.randn(7, 5, dtype=torch.float64)
    k = 1.5
    used, sigma, u = _DivideBySigma.apply(w, v, k, only_shrink)
    (grad_fused,) = torch.autograd.grad((used * g).sum() + 0.3 * sigma, w)
    w2 = w.detach().clone().requires_grad_(True)
    u_ref = torch.nn.functional.normalize((w2 @ v).detach(), dim=0)
    sigma_ref = u_ref @ (w2 @ v)
    scale = sigma_ref / k
    if only_shrink:
        scale = scale.clamp_min(1.0)
    (grad_ref,) = torch.autograd.grad(((w2 / scale) * g).sum() + 0.3 * sigma_ref, w2)
    assert torch.allclose(sigma, sigma_ref) and torch.allclose(u, u_ref)
    assert torch.allclose(grad_fused, grad_ref, atol=1e-10)


@pytest.mark.parametrize("only_shrink, factor, bias", [(False, 1.0, True), (True, 3.0, False), (True, 0.1, True)])
def test_fused_spectral_linear_matches_autograd(only_shrink, factor, bias):
    """Output-side fused SN linear against autograd through F.linear(x, W / s, b), in double precision."""
    from rlsmooth.pieces.spectral import _SpectralLinear
    torch.manual_seed(1)
    w = (torch.randn(6, 4, dtype=torch.float64) * factor).requires_grad_(True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True) if bias else None
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    v = torch.nn.functional.normalize(torch.randn(4, dtype=torch.float64), dim=0)
    g = torch.randn(3, 6, dtype=torch.float64)
    k = 0.7
    y, sigma, u = _SpectralLinear.apply(x, w, b, v, k, only_shrink)
    leaves = [x, w] + ([b] if bias else [])
    fused = torch.autograd.grad((y * g).sum() + 0.2 * sigma, leaves)
    u_ref = torch.nn.functional.normalize((w @ v).detach(), dim=0)
    sigma_ref = u_ref @ (w @ v)
    scale = sigma_ref / k
    if only_shrink:
        scale = scale.clamp_min(1.0)
    y_ref = F.linear(x, w / scale, b)
    reference = torch.autograd.grad((y_ref * g).sum() + 0.2 * sigma_ref, leaves)
    assert torch.allclose(y, y_ref) and torch.allclose(sigma, sigma_ref)
    for a, r in zip(fused, reference):
        assert torch.allclose(a, r, atol=1e-10)


def test_sn_linear_training_pass_equals_parametrised_weight():
    net = minatar_net()
    apply_spectral(net, SpectralConfig(layers=["fc", "out"]), (2, 10, 10))
    obs = torch.rand(4, 2, 10, 10)
    net.train()
    out = net(obs)                       # fused path, advances u, v once
    net.eval()
    assert torch.allclose(out, net(obs), rtol=1e-5, atol=1e-6)   # W / sigma through the parametrisation


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd"])
def test_optimiser_kernels_agree_over_50_steps(name):
    """foreach is bit-identical to the per-tensor loop; fused agrees to float rounding."""
    obs = torch.rand(16, 2, 10, 10)
    results = {}
    impls = ["single", "foreach"] + ([] if name == "rmsprop" else ["fused"])
    for impl in impls:
        net = minatar_net(seed=3)
        opt = build_optimizer(list(net.parameters()), OptimConfig(name=name, lr=1e-3, implementation=impl), None)
        for _ in range(50):
            opt.zero_grad()
            net(obs).square().mean().backward()
            opt.step()
        results[impl] = [p.detach().clone() for p in net.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(results["single"], results["foreach"]))
    if "fused" in results:
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(results["single"], results["fused"]))
    with pytest.raises(ConfigError, match="no fused RMSprop"):
        build_optimizer(list(minatar_net().parameters()), OptimConfig(name="rmsprop", implementation="fused"), None)
