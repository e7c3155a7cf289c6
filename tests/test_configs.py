"""Configs: every preset and sweep validates, configs that cannot learn or run are refused, the paper's MinAtar
nets, and A2C's loss as Stable-Baselines3 states it."""
import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, run_cli
from rlsmooth.config.sections import NetworkConfig
from rlsmooth.config.yaml_files import apply_overrides, load_yaml
from rlsmooth.errors import ConfigError
from rlsmooth.pieces.networks import build_q_network, named_layers, select_layers

CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "sweeps" not in p.parts)
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))


def load(data):
    from rlsmooth.agents.preflight import load_train_config
    return load_train_config(data)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_config_loads_and_validates(path):
    load(load_yaml(path))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_loads_and_validates_all_its_cells(path):
    from rlsmooth.experiments.sweep import load_sweep
    sweep = load_sweep(path)
    assert len(sweep.cells) == len({c.run_dir for c in sweep.cells})


def test_a_sweep_builds_one_env_per_game_to_check_its_cells(monkeypatch):
    """Checking a sweep's cells builds an env once per distinct env section (seeds and variants share
    it), and each game keeps its own spaces: MinAtar asterix has 4 channels, space_invaders 6."""
    from rlsmooth.agents import preflight
    built = []
    real = preflight.make_vec_env
    monkeypatch.setattr(preflight, "make_vec_env", lambda cfg, *a, **k: built.append(cfg.game) or real(cfg, *a, **k))
    preflight._env_spaces.cache_clear()
    base = load_yaml(ROOT / "configs" / "minatar_dqn.yaml")
    channels = {}
    for game in ("asterix", "space_invaders"):
        for seed in range(3):
            for layers in ("[]", "[fc]"):
                cfg = load(apply_overrides(base, [f"env.game={game}", f"seed={seed}", f"spectral.layers={layers}"]))
                channels[game] = preflight.env_spaces(cfg.env)[0][0]
    assert built == ["asterix", "space_invaders"] and channels == {"asterix": 4, "space_invaders": 6}


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("agent: dqn\noptim:\n  lr: 1.0e-3\noptim:\n  lr: 2.0e-3\n")
    with pytest.raises(ConfigError, match="duplicate key 'optim' .line 4."):
        load_yaml(path)
    proc = run_cli("train", path)
    assert proc.returncode == 2 and "duplicate key 'optim'" in proc.stderr and "Traceback" not in proc.stderr


def test_sweep_with_duplicate_cells_is_refused(tmp_path, chain_config):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"base: {chain_config()}\naxes:\n  seed: [0, 0]\n")
    from rlsmooth.experiments.sweep import load_sweep
    with pytest.raises(ConfigError, match="share the run directory .*seed=0"):
        load_sweep(path)


def test_c51_holds_only_what_it_reads():
    base = load_yaml(ROOT / "configs" / "minatar_c51.yaml")
    for key in ("algo.double=true", "algo.loss=mse"):
        with pytest.raises(ConfigError, match="unknown config key 'algo.(double|loss)'"):
            load(apply_overrides(dict(base), [key]))
    dqn = load(load_yaml(ROOT / "configs" / "minatar_dqn.yaml"))
    assert dqn.algo.loss == "mse" and dqn.algo.double is False


@pytest.mark.parametrize("overrides, needle", [
    (["algo.learning_starts=6000", "loop.total_steps=6000"], "would make no update"),
    (["algo.epsilon_start=0.1", "algo.epsilon_end=0.5"], "exploration would rise"),
    (["seed=-1"], "seed must be in [0, 2^63)"),
    ([f"seed={2**64}"], "out of range"),
    (["optim.lr=.nan"], "finite number"),
    (["network.channels=[8, 8, 8, 8, 8]"], "do not fit a 10x10 input"),
])
def test_configs_that_cannot_learn_or_run_are_refused(overrides, needle):
    base = load_yaml(ROOT / "configs" / "minatar_dqn.yaml")
    with pytest.raises(ConfigError) as info:
        load(apply_overrides(base, overrides))
    assert needle in str(info.value)


def test_actor_critic_budget_is_exact_or_refused():
    base = load_yaml(ROOT / "configs" / "minatar_ppo.yaml")
    with pytest.raises(ConfigError, match=r"must be a multiple of .* = 1024; nearest valid: 1_024 or 2_048"):
        load(apply_overrides(dict(base), ["loop.total_steps=2000"]))
    with pytest.raises(ConfigError, match="nearest valid: 1_024$"):
        load(apply_overrides(dict(base), ["loop.total_steps=1000"]))
    cfg = load(apply_overrides(dict(base), ["loop.total_steps=2048"]))
    assert cfg.loop.total_steps == 2048


def test_actor_critic_runs_exactly_total_steps(tmp_path):
    pytest.importorskip("minatar")
    out = tmp_path / "ppo"
    run_cli("train", ROOT / "configs" / "minatar_ppo.yaml", "env.num_envs=4", "algo.num_steps=32",
            "loop.total_steps=384", "loop.eval_every=0", "loop.eval_steps=50", "loop.log_every=128",
            "loop.progress=false", "--out", out, check=True)
    import json
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 384


def test_a2c_loss_matches_stable_baselines3_form():
    """SB3's A2C: policy_loss + ent_coef * (-entropy) + vf_coef * F.mse_loss(returns, values)."""
    from rlsmooth.pieces.policy_losses import a2c_loss
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    values = torch.randn(6, requires_grad=True)
    actions, adv, returns = torch.randint(0, 4, (6,)), torch.randn(6), torch.randn(6)
    dist = torch.distributions.Categorical(logits=logits)
    loss, pg, v, ent = a2c_loss(dist.log_prob(actions), adv, values, returns, dist.entropy(), 0.5, 0.01)
    log_probs = F.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1)
    entropy = -(F.softmax(logits, -1) * F.log_softmax(logits, -1)).sum(-1)
    sb3 = -(adv * log_probs).mean() + 0.01 * (-entropy.mean()) + 0.5 * F.mse_loss(returns, values)
    assert loss.item() == pytest.approx(sb3.item(), rel=1e-6)
    assert v.item() == pytest.approx(((returns - values) ** 2).mean().item(), rel=1e-6)
    g_ours = torch.autograd.grad(loss, values, retain_graph=True)[0]
    g_sb3 = torch.autograd.grad(sb3, values)[0]
    torch.testing.assert_close(g_ours, g_sb3)


@pytest.mark.parametrize("channels, hidden, names", [
    ([], [], ["conv1", "fc", "out"]),
    ([8, 8, 8], [32], ["conv1", "conv2", "conv3", "fc", "out"]),
    ([32, 32, 24], [256], ["conv1", "conv2", "conv3", "fc", "out"]),
    ([16, 16], [64, 32], ["conv1", "conv2", "fc1", "fc2", "out"]),
])
def test_minatar_torso_sizes_and_layer_names(channels, hidden, names):
    net = build_q_network(NetworkConfig(kind="minatar", channels=channels, hidden=hidden), "minatar",
                          (4, 10, 10), 6)
    assert [n for n, _ in named_layers(net)] == names
    out = net(torch.zeros(3, 4, 10, 10, dtype=torch.uint8))
    assert out.shape == (3, 6)
    convs = [m for n, m in named_layers(net) if n.startswith("conv")]
    assert [c.out_channels for c in convs] == (channels or [16])
    assert [m.out_features for n, m in named_layers(net) if n.startswith("fc")] == (hidden or [128])
    # -2 is the last hidden layer, -3 the layer before it
    assert select_layers(net, [-2]) == [names[-2]] and select_layers(net, [-3]) == [names[-3]]


def test_paper_size_presets():
    expected = {"c8_h32": ([8, 8, 8], [32]), "c16_h64": ([16, 16, 16], [64]),
                "c24_h128": ([24, 24, 24], [128]), "c32_h256": ([32, 32, 24], [256])}
    for name, (channels, hidden) in expected.items():
        cfg = load(load_yaml(ROOT / "configs" / "ablations" / f"minatar_dqn_net_{name}.yaml"))
        assert (cfg.network.channels, cfg.network.hidden) == (channels, hidden)
    from rlsmooth.experiments.sweep import load_sweep
    sweep = load_sweep(ROOT / "configs" / "sweeps" / "minatar_size_sn.yaml")
    assert len(sweep.cells) == 3 * 4 * 4 * 7


def test_the_short_run_warning_names_checkpoint_and_log_periods():
    from rlsmooth.agents.preflight import load_train_config, long_schedules
    from rlsmooth.config.yaml_files import apply_overrides, load_yaml
    cfg = load_train_config(apply_overrides(load_yaml(ROOT / "configs" / "minatar_dqn.yaml"),
                                            ["loop.total_steps=6000", "loop.log_every=10000"]))
    long = long_schedules(cfg)
    assert "loop.checkpoint_every=250_000" in long and "loop.log_every=10_000" in long
    # the README's short-run recipe outlives none of its own schedules but the ones it names
    readme = apply_overrides(load_yaml(ROOT / "configs" / "minatar_dqn.yaml"),
                             ["loop.total_steps=50_000", "algo.epsilon_decay_steps=10_000", "loop.eval_every=10_000",
                              "loop.eval_steps=5_000", "loop.checkpoint_every=10_000"])
    assert long_schedules(load_train_config(readme)) == []


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "sweeps" / "criteria").glob("*.yaml")), ids=lambda p: p.name)
def test_every_criteria_file_loads(path):
    from rlsmooth.experiments.report.criteria import load_criteria
    assert load_criteria(path).items


def test_the_1m_study_on_three_more_games_keeps_its_design_and_its_test():
    """The sweep for breakout, seaquest and freeway differs from the first 1M sweep in its games only,
    and the five-game criteria keep every contrast of the first two games' test, restricted to them."""
    from rlsmooth.experiments.report.criteria import load_criteria
    from rlsmooth.experiments.sweep import load_sweep
    sweeps = ROOT / "configs" / "sweeps"
    first, more = load_sweep(sweeps / "minatar_adam_sn_1m.yaml"), load_sweep(sweeps / "minatar_adam_sn_1m_more_games.yaml")
    assert {c.axes["game"] for c in first.cells} == {"asterix", "space_invaders"}
    assert {c.axes["game"] for c in more.cells} == {"breakout", "seaquest", "freeway"} and len(more.cells) == 54
    assert more.out == first.out and not {c.name for c in first.cells} & {c.name for c in more.cells}

    def design(sweep):
        return {tuple(sorted((k, v) for k, v in c.axes.items() if k != "game")):
                sorted(o for o in c.overrides if not o.startswith("env.game=")) for c in sweep.cells}
    assert design(more) == design(first)
    # one seed of every (game, lr, variant) before the next seed
    assert [c.axes["seed"] for c in more.cells] == sorted(c.axes["seed"] for c in more.cells)

    def contrast(c):
        return (c.treatment, c.baseline, c.axis, c.at, c.versus, c.statistic, c.threshold, c.fail_threshold)
    two = load_criteria(sweeps / "criteria" / "minatar_adam_sn.yaml").items
    five = load_criteria(sweeps / "criteria" / "minatar_adam_sn_five_games.yaml").items
    pooled = [c for c in two if c.games is None]
    assert [contrast(c) for c in pooled] == [contrast(c) for c in five if c.games == ["asterix", "space_invaders"]]
    assert [contrast(c) for c in pooled] == [contrast(c) for c in five if c.games is not None and len(c.games) == 5]
    per_game = {c.games[0]: contrast(c) for c in five if c.games is not None and len(c.games) == 1}
    assert set(per_game) == {"asterix", "space_invaders", "breakout", "seaquest", "freeway"}
    assert {contrast(c) for c in two if c.games is not None} == set(per_game.values())
