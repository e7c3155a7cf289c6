"""The architecture holds: no import cycles, every module imports on its own, one agent table."""
import ast
import importlib
import re
import subprocess
import sys

import pytest

from conftest import ROOT

PACKAGES = ("rlsmooth", "agents")


def module_names():
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts[-1] != "__main__":
                names.append(".".join(parts))
    return names


def imports_of(module):
    """Every project module a module imports, at top level or inside functions."""
    path = ROOT / module.replace(".", "/")
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    known = set(module_names())
    return {name for name in found if name in known and name != module}


def test_no_import_cycles_between_modules():
    graph = {m: imports_of(m) for m in module_names()}
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}  # a package's own __init__
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in graph[node]:
            if state.get(dep) == "open":
                cycle = path[path.index(dep):] + [dep] if dep in path else [node, dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", module_names())
def test_every_module_imports_on_its_own(module):
    saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] in PACKAGES}
    for name in saved:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    finally:   # later tests keep the classes they imported (ConfigError ...)
        for name in [n for n in sys.modules if n.split(".")[0] in PACKAGES]:
            del sys.modules[name]
        sys.modules.update(saved)


def test_no_library_module_imports_the_script_and_run_py_is_a_shim():
    for module in module_names():
        assert "run" not in {name.split(".")[0] for name in imports_of(module) | {""}}, module
        source = (ROOT / module.replace(".", "/")).with_suffix(".py")
        if source.is_file():
            assert not re.search(r"^\s*import run\b|^\s*from run import", source.read_text(), re.M), module
    assert len((ROOT / "run.py").read_text().splitlines()) <= 10


LAYERS = [("base", ("rlsmooth", "rlsmooth.errors", "rlsmooth.files", "rlsmooth.config")),
          ("pieces", ("rlsmooth.pieces",)), ("training", ("rlsmooth.training",)), ("agents", ("rlsmooth.agents",)),
          ("population", ("rlsmooth.population",)), ("experiments", ("rlsmooth.experiments",)),
          ("cli", ("rlsmooth.cli", "rlsmooth.__main__"))]


def layer_of(module):
    """The floor of a package module: the longest prefix in LAYERS that names it."""
    best = None
    for depth, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (depth, len(prefix))
    return best[0] if best else None


def test_imports_run_only_down_the_floors():
    """pieces -> training -> agents -> population -> experiments -> cli (and the base under all):
    no module imports from a higher floor."""
    up = []
    for module in module_names():
        if not module.startswith("rlsmooth"):
            continue
        here = layer_of(module)
        assert here is not None, f"{module} is on no floor"
        for dep in imports_of(module):
            if dep.startswith("rlsmooth") and layer_of(dep) > here:
                up.append(f"{module} ({LAYERS[here][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})")
    assert not up, "\n".join(up)


def test_agents_is_not_an_installed_package():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'include = ["rlsmooth*"]' in text and "agents*" not in text


def test_one_agent_table_read_by_every_command(monkeypatch):
    """An agent added to the table alone is known to config loading, preflight, the bench and the CLI."""
    import rlsmooth.agents as table
    from rlsmooth.agents import AGENTS, algo_classes, dqn
    from rlsmooth.agents.preflight import load_train_config
    from rlsmooth.experiments import bench
    assert set(AGENTS) == {"dqn", "c51", "ppo", "a2c"}
    for agent in AGENTS.values():
        assert agent.FAMILY in ("value", "actor_critic") and callable(agent.build) and callable(agent.train)
        assert callable(agent.load_policy) and isinstance(agent.CONFIG, type) and set(agent.PRESETS) >= {"atari", "minatar"}
    monkeypatch.setitem(AGENTS, "dqn_copy", dqn)
    assert algo_classes()["dqn_copy"] is dqn.CONFIG
    cfg = load_train_config({"agent": "dqn_copy", "env": {"suite": "test", "game": "chain"},
                             "algo": {"learning_starts": 100, "replay_capacity": 1000}, "loop": {"total_steps": 200}})
    assert cfg.agent == "dqn_copy"
    bench_cfg, _ = bench.bench_config("dqn_copy", "minatar", "breakout", 1, "cpu", 100, "none")
    assert bench_cfg.agent == "dqn_copy" and bench_cfg.algo.loss == "mse"   # the preset the table names
    assert table.AGENTS is AGENTS


def test_rho_scaling_is_compared_as_a_string_only_where_it_is_parsed():
    hits = []
    for path in list((ROOT / "rlsmooth").rglob("*.py")) + list((ROOT / "agents").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"rho_scaling\s*(==|!=|in)\s|mode\s*(==|in)\s*\(?[\"'](lr|grad|divout)", line):
                hits.append(f"{path.relative_to(ROOT)}:{number}")
    # optim.py parses it; report.py reads it from other runs' saved config.yaml files
    assert all(h.startswith(("rlsmooth/pieces/optim.py", "rlsmooth/experiments/report.py")) for h in hits), hits


def test_the_repository_stands_alone():
    pattern = re.compile(r"DESIGN\b|DEVELOPERS\.md|shared/|\bissue \d+|\(#\d+\)")
    for path in [*ROOT.glob("*.md"), *ROOT.glob("*.py"), *(ROOT / "docs").rglob("*.md"), *(ROOT / "configs").rglob("*.yaml"),
                 *(ROOT / "rlsmooth").rglob("*.py"), *(ROOT / "agents").rglob("*.py"), *(ROOT / "bench").rglob("*")]:
        if path.is_file():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                assert not pattern.search(line), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"


def test_console_script_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'rlsmooth = "rlsmooth.cli:main"' in text
    proc = subprocess.run([sys.executable, "-m", "rlsmooth", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout
