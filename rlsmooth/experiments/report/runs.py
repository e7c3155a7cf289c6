"""The runs a report reads: their identity (suite, game, agent, seed, variant), evaluation curves,
sigma curves and how they ended.  A run that cannot be used is skipped with its reason."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rlsmooth.config.coerce import to_dict
from rlsmooth.errors import ConfigError

CORE_AXES = ("game", "seed", "variant")
"""Sweep axes that identify a run rather than a variant (any other axis is part of the variant)."""


@dataclass
class Run:
    path: Path
    agent: str
    suite: str
    game: str
    seed: int
    core: str                       # what the run changes: baseline, sn[fc], rho=lr+grad[fc] ...
    extra: str                      # other sweep axes, e.g. 'optim.lr=0.001' ('' for none)
    finished: bool
    diverged: bool
    stopped_early: bool             # reached loop.stop_return
    last_step: int
    eval_curve: list[tuple[int, float]]           # finite evaluations only
    sigma_curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    frames_per_step: int = 1
    dropped_nonfinite: int = 0      # evaluation lines with a non-finite return, left out of the curve
    row: str = ""                   # the table row: the game, or suite/game where two suites share a game id
    settings: dict = field(default_factory=dict)   # the flattened config keys that make the run what it is
    axes: dict = field(default_factory=dict)       # its sweep cell's axis values (sweep_cell.json)

    @property
    def variant(self) -> str:
        return " ".join(p for p in (self.core, self.extra) if p)

    @property
    def ended_early(self) -> bool:
        """Diverged or stopped at its target: its last evaluation is its score, wherever it stopped."""
        return self.diverged or self.stopped_early


def core_label(config: dict) -> str:
    """What a run changes, from the resolved layer names its config recorded (``meta.layers``), so that
    ``[-2]`` and ``[fc]`` on one network are one variant.  No SN and no rho scaling reads 'baseline'."""
    layers = (config.get("meta") or {}).get("layers") or {}
    spectral, optim = config.get("spectral") or {}, config.get("optim") or {}
    parts = []
    if layers.get("normalised"):
        options = [o for o, on in (("only_shrink", spectral.get("only_shrink")),
                                   (f"k={spectral.get('k')}", spectral.get("k", 1.0) != 1.0),
                                   ("operator", spectral.get("conv_norm") == "operator")) if on]
        parts.append(f"sn[{','.join(layers['normalised'] + options)}]")
    if optim.get("rho_scaling", "none") != "none":
        form = "" if optim.get("rho_only_shrink", True) else ",unclamped"
        parts.append(f"rho={optim['rho_scaling']}[{','.join(layers.get('rho_layers') or [])}{form}]")
    return "+".join(parts) or "baseline"


NOT_IDENTITY = ("seed", "meta.", "wandb.", "device", "threads", "loop.progress", "loop.log_every",
                "loop.checkpoint_every", "loop.total_steps", "loop.save_replay", "spectral.log_every", "env.game",
                "env.suite")
"""Config keys that do not make two runs different variants: the seed, the row (suite and game), where
and how a run was trained and logged, and its budget (runs that stopped at different steps are
compared at the last step they all reached, and flagged)."""


def identity_settings(config: dict) -> dict:
    """The flattened config without :data:`NOT_IDENTITY`, values as text (lists and floats compare as written)."""
    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = json.dumps(value, sort_keys=True, default=str)
    walk("", {k: v for k, v in config.items() if k != "meta"})
    layers = (config.get("meta") or {}).get("layers") or {}
    for key, resolved in (("spectral.layers", "normalised"), ("spectral.track", "tracked"),
                          ("optim.rho_layers", "rho_layers")):
        if resolved in layers:   # [-2] and [fc] on one network are one choice
            flat[key] = json.dumps(layers[resolved])
    return {k: v for k, v in flat.items()
            if not any(k == n or (n.endswith(".") and k.startswith(n)) for n in NOT_IDENTITY)}


def split_variants(runs: list[Run]) -> None:
    """Runs that share a label but not their configs (beyond :data:`NOT_IDENTITY`) are never one
    variant: each gets the keys that differ within its label appended (``baseline optim.lr=1e+30``)."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.variant, []).append(r)
    for group in groups.values():
        keys = set.union(*(set(r.settings) for r in group))
        differ = sorted(k for k in keys if len({r.settings.get(k) for r in group}) > 1)
        if not differ:
            continue
        for r in group:   # a key one config lacks (another rlsmooth version) is a difference too
            r.core = " ".join([r.core] + [f"{k}={json.loads(r.settings[k]) if k in r.settings else '(absent)'}"
                                          for k in differ])


def treatment_axes(axes: dict | None) -> list[str]:
    """The sweep axes its file names as treatments (compared with the baseline), besides ``variant``."""
    named = (axes or {}).get("_treatments") or []
    return [a for a in named if isinstance(a, str)]


def extra_label(axes: dict | None) -> str:
    """The condition axes (compared within: a learning rate, a network size), as ``axis=value``."""
    treated = set(treatment_axes(axes))
    return " ".join(f"{k}={v}" for k, v in (axes or {}).items()
                    if k not in CORE_AXES and not k.startswith("_") and k not in treated)


def treated_label(label: str, axes: dict | None, baseline: str = "baseline") -> str:
    """The variant label with its treatment axes' values joined on (a value named ``baseline`` is the
    baseline's own and adds nothing): ``baseline`` + opt=adam_eps reads ``opt=adam_eps``."""
    parts = [f"{a}={axes[a]}" for a in treatment_axes(axes) if a in axes and str(axes[a]) != baseline]
    if not parts:
        return label
    return "+".join(([] if label == baseline else [label]) + parts)


def variant_label(config: dict, axes: dict | None = None) -> str:
    """The core label with the sweep's other axes (e.g. a network size) appended."""
    return " ".join(p for p in (core_label(config), extra_label(axes)) if p)


def extra_axis_keys(runs: list[Run]) -> list[str]:
    """The config keys the non-variant sweep axes set: constant within each ``extra`` value, and
    differing between them (the variants' own keys vary within an extra value and are not among them)."""
    extras: dict[str, list[Run]] = {}
    for r in runs:
        extras.setdefault(r.extra, []).append(r)
    if len(extras) < 2:
        return []
    keys = set.union(*(set(r.settings) for r in runs))
    within = [k for k in keys if all(len({r.settings.get(k) for r in group}) == 1 for group in extras.values())]
    return sorted(k for k in within if len({group[0].settings.get(k) for group in extras.values()}) > 1)


def default_extra(runs: list[Run]) -> tuple[str | None, str]:
    """The ``extra`` value whose axis keys hold the agent's preset values (the suite's default for
    that agent and suite), and what the preset sets them to (``''`` when the runs mix agents or
    suites, or have no extra axis).  None where no value matches: the default is then not swept."""
    from rlsmooth.agents import AGENTS, algo_classes
    from rlsmooth.config.sections import parse_train_config
    from rlsmooth.config.yaml_files import CONFIGS, load_yaml
    keys = extra_axis_keys(runs)
    kinds = {(r.agent, r.suite) for r in runs}
    if not keys or len(kinds) != 1:
        return None, ""
    agent, suite = kinds.pop()
    preset = AGENTS[agent].PRESETS.get(suite) if agent in AGENTS else None
    if preset is None or not (CONFIGS / preset).is_file():
        return None, ""
    try:
        defaults = identity_settings(to_dict(parse_train_config(load_yaml(CONFIGS / preset), algo_classes())))
    except ConfigError:
        return None, ""
    wanted = {k: defaults.get(k) for k in keys}
    said = ", ".join(f"{k}={json.loads(v) if v is not None else '(unset)'}" for k, v in wanted.items())
    for r in runs:
        if all(r.settings.get(k) == v for k, v in wanted.items()):
            return r.extra, f"{preset}: {said}"
    return None, f"{preset}: {said}"


def frames_per_step(config: dict) -> int:
    """Emulator frames per agent step: the run's frame skip on Atari, 1 elsewhere."""
    env = config.get("env") or {}
    return int(env.get("frame_skip", 4)) if env.get("suite") == "atari" else 1


def find_run_dirs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    found, problems = [], []
    for path in paths:
        if not path.exists():
            problems.append(f"{path}: not found")
        elif (path / "config.yaml").is_file():
            found.append(path)
        else:
            runs = sorted(p.parent for p in path.rglob("config.yaml"))
            if not runs:
                problems.append(f"{path}: no run directories inside")
            found.extend(runs)
    return sorted(set(found)), problems


def _records(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):   # a run still being written may end in a partial line
                break
            raise ValueError(f"malformed metrics.jsonl line {number}") from None
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2**63:
            raise ValueError(f"metrics.jsonl line {number}: 'step' must be an integer number of agent steps in "
                             f"[0, 2^63), got {str(step)[:40]}")
        records.append(record)
    return records


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"unreadable {what}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} is not a mapping")
    return data


def load_run(path: Path) -> Run:
    """Raise ValueError with the reason when the run cannot be used."""
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
        env = config["env"]
        agent, suite, game, seed = config["agent"], env["suite"], env["game"], config.get("seed", 0)
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable config.yaml ({type(exc).__name__})") from None
    for key, value in (("agent", agent), ("env.suite", suite), ("env.game", game)):
        if not isinstance(value, str):
            raise ValueError(f"config.yaml: {key} must be a name, got {str(value)[:40]}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"config.yaml: seed must be an integer, got {str(seed)[:40]}")
    layers = (config.get("meta") or {}).get("layers") if isinstance(config.get("meta"), dict) else None
    if layers is not None and (not isinstance(layers, dict) or not all(
            isinstance(v, list) and all(isinstance(n, str) for n in v) for v in layers.values())):
        raise ValueError("config.yaml: meta.layers must map normalised / tracked / rho_layers to lists of layer names")
    for section in ("spectral", "optim"):
        if config.get(section) is not None and not isinstance(config[section], dict):
            raise ValueError(f"config.yaml: {section} must be a mapping")
    if not (path / "metrics.jsonl").is_file():
        raise ValueError("no metrics.jsonl")
    records = _records(path / "metrics.jsonl")
    evals = [(r["step"], r["eval/episode_return"]) for r in records if "eval/episode_return" in r]
    curve = [(s, float(v)) for s, v in evals if isinstance(v, (int, float)) and math.isfinite(v)]
    summary_path = path / "summary.json"
    if not curve:
        ended = _read_json(summary_path, "summary.json") if summary_path.is_file() else {}
        if ended.get("diverged"):
            raise ValueError(f"diverged after step {ended.get('diverged_after_step', '?')}, before its first finite "
                             f"evaluation: it has no score and is left out")
        raise ValueError("no finite evaluation yet" if evals else "no evaluation yet")
    sigmas: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for key, value in r.items():
            if key.startswith("spectral/sigma/") and isinstance(value, (int, float)) and math.isfinite(value):
                sigmas.setdefault(key[len("spectral/sigma/"):], []).append((r["step"], float(value)))
    axes = _read_json(path / "sweep_cell.json", "sweep_cell.json") if (path / "sweep_cell.json").is_file() else {}
    summary = _read_json(path / "summary.json", "summary.json") if (path / "summary.json").is_file() else None
    diverged = bool(summary and summary.get("diverged"))
    # a sweep's own name for what a cell changes is the variant; else what its SN / rho settings say
    label = treated_label(str(axes["variant"]) if "variant" in axes else core_label(config), axes)
    return Run(path, agent, suite, game, seed, label, extra_label(axes), summary is not None, diverged,
               bool(summary and summary.get("stopped_at_return") is not None), max(r["step"] for r in records), curve, sigmas,
               frames_per_step(config), len(evals) - len(curve), settings=identity_settings(config),
               axes={k: v for k, v in axes.items() if not k.startswith("_")})


def game_labels(runs: list[Run]) -> None:
    """Runs of one game id in two suites (Atari and MinAtar Breakout) are never one row: such games
    are labelled suite/game."""
    suites: dict[str, set[str]] = {}
    for r in runs:
        suites.setdefault(r.game, set()).add(r.suite)
    for r in runs:
        r.row = f"{r.suite}/{r.game}" if len(suites[r.game]) > 1 else r.game
