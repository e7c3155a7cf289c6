"""loop.precision: bf16 forward passes under autocast with float32 master weights, optimiser states, SN
and TD arithmetic; the loss within bf16 rounding of fp32's; recorded and refused on a resume by key."""
import pytest
import torch

from conftest import ROOT, assert_one_line_error, run_cli
from rlsmooth.agents import AGENTS
from rlsmooth.agents.dqn import build_q_learner, update_step
from rlsmooth.agents.preflight import load_train_config
from rlsmooth.config.yaml_files import apply_overrides, load_yaml
from rlsmooth.pieces.replay import Batch
from rlsmooth.pieces.seeding import SeedStreams


def learner(preset, *overrides):
    cfg = load_train_config(apply_overrides(load_yaml(ROOT / "configs" / preset), ["device=cpu", *overrides]))
    SeedStreams(cfg.seed).seed_globals()
    head = AGENTS[cfg.agent].value_head(cfg)
    return build_q_learner(cfg, head, (4, 10, 10), 6, torch.device("cpu")), head


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randint(0, 2, (32, 4, 10, 10), dtype=torch.uint8, generator=g), torch.randint(0, 6, (32,), generator=g),
                 torch.rand(32, generator=g), torch.full((32,), 0.99),
                 torch.randint(0, 2, (32, 4, 10, 10), dtype=torch.uint8, generator=g))


@pytest.mark.parametrize("preset", ["minatar_dqn.yaml", "minatar_c51.yaml"])
@pytest.mark.parametrize("variant", [[], ["spectral.layers=[fc]"], ["optim.rho_scaling=grad", "optim.rho_layers=[fc]"]])
def test_bf16_loss_is_within_bf16_rounding_of_fp32s_and_state_stays_fp32(preset, variant):
    fp32, head = learner(preset, *variant)
    bf16, _ = learner(preset, *variant, "loop.precision=bf16")
    b = batch()
    loss32, _ = head.loss(fp32.net, fp32.target, b)
    loss16, _ = head.loss(bf16.net, bf16.target, b)
    assert loss16.dtype == torch.float32 and bf16.net(b.obs).dtype == torch.float32
    rel = abs(loss16.item() - loss32.item()) / abs(loss32.item())
    assert 0 < rel < 2 ** -6, rel   # bf16 has 8 significant bits: the forward passes really ran in it
    for _ in range(3):
        update_step(bf16, head, b, 0.0)
    assert all(p.dtype == torch.float32 for p in bf16.net.parameters())
    assert all(v.dtype == torch.float32 for s in bf16.optimizer.state.values() for v in s.values())
    assert all(e.sigma.dtype == torch.float32 and e.u.dtype == torch.float32 for e in bf16.estimators.values())


def test_actor_critic_runs_its_forward_in_bf16():
    from rlsmooth.agents.ppo import build_actor_critic_learner
    cfg = load_train_config(apply_overrides(load_yaml(ROOT / "configs" / "minatar_ppo.yaml"),
                                            ["device=cpu", "loop.precision=bf16"]))
    ac = build_actor_critic_learner(cfg, (4, 10, 10), 6, torch.device("cpu"), message=lambda m: None)
    net = ac.net
    logits, value = net(batch().obs)
    assert logits.dtype == value.dtype == torch.float32
    net.precision = "fp32"
    logits32, _ = net(batch().obs)
    assert 0 < (logits - logits32).abs().max().item() < 0.05


def test_precision_is_recorded_and_a_resume_under_another_is_refused_by_key(chain_config, tmp_path):
    out = tmp_path / "run"
    run_cli("train", chain_config(steps=400), "loop.precision=bf16", "loop.checkpoint_every=200", "--out", out,
            check=True)
    assert "precision: bf16" in (out / "config.yaml").read_text()
    (out / "summary.json").unlink()
    text = (out / "config.yaml").read_text().replace("precision: bf16", "precision: fp32")
    (out / "config.yaml").write_text(text)
    assert_one_line_error(run_cli("train", "--resume", out), "loop.precision: 'bf16' → 'fp32'")
    assert_one_line_error(run_cli("train", "--resume", out, "loop.precision=bf16"), "cannot change loop.precision")


def test_a_stacked_updates_flops_are_k_times_its_solo_updates_and_the_peak_bench_reports_them(tmp_path):
    """The --peak bench counts K members' stacked update as K solo updates (counted apart, on the
    solo learner) and reports a rate below the measured GEMM peak."""
    import json
    from conftest import run_cli
    from rlsmooth.experiments.bench import update_timer
    from rlsmooth.experiments.bench_peak import count_flops, member_config, population_update
    solo = count_flops(update_timer(member_config("default", "fp32")))
    assert solo > 0
    for k in (1, 3):
        assert population_update("default", k, "fp32")[1] == k * solo
    out = tmp_path / "peak.json"
    run_cli("bench", "--peak", "2", "--nets", "default", "--precision", "fp32,bf16", "--repeats", "1",
            "--gemm-size", "128", "--json", out, check=True)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["members"], r["precision"]) for r in rows] == [(2, "fp32"), (2, "bf16")]
    assert all(r["flops"] == 2 * solo and 0 < r["peak_fraction"] for r in rows)


def test_bf16_on_a_cpu_warns_once_where_it_is_emulated_or_measured_no_faster(monkeypatch, capsys):
    from rlsmooth.agents import preflight
    cfg = load_train_config(apply_overrides(load_yaml(ROOT / "configs" / "minatar_dqn.yaml"),
                                            ["device=cpu", "loop.precision=bf16"]))
    capsys.readouterr()   # loading checked it once already, on this machine's own CPU
    measure = preflight.bf16_matmul_speedup
    for native, speedup, needle in ((False, 3.0, "without native bf16"), (True, 0.5, "run at 0.50x its fp32 ones"),
                                    (True, 2.0, None)):
        monkeypatch.setattr(preflight, "_warned", set())
        monkeypatch.setattr(preflight, "cpu_has_native_bf16", lambda native=native: native)
        monkeypatch.setattr(preflight, "bf16_matmul_speedup", lambda speedup=speedup: speedup)
        preflight.check_precision(cfg)
        preflight.check_precision(cfg)
        lines = capsys.readouterr().err.splitlines()
        assert (lines == []) if needle is None else (len(lines) == 1 and needle in lines[0]), (native, speedup, lines)
    assert 0 < measure(size=64, repeats=2) < float("inf")   # the measurement itself: a finite positive ratio
