"""Checkpoints in isolation: round trip, the layout check, config changes and what may change on resume."""
import random

import numpy as np
import pytest
import torch
from torch import nn

from rlsmooth.errors import ConfigError
from rlsmooth.training import checkpoint as ckpt


def payload(net):
    rng = np.random.default_rng(0)
    return {"format": ckpt.FORMAT, "step": 10, "counters": {"step": 10, "next_log": 20}, "config": {"seed": 0},
            "rng": ckpt.rng_state(rng), "env": {}, "obs": torch.zeros(1, 2),
            "run": {"episodes": {"ret": [0.0], "length": [0], "finished": []}, "window": {"sums": {}, "count": 0},
                    "last_eval": {}},
            "net": net.state_dict()}


def test_round_trip_and_rng_states(tmp_path):
    net = nn.Linear(3, 2)
    path = tmp_path / "c.pt"
    rng = np.random.default_rng(5)
    random.seed(3)
    torch.manual_seed(4)
    state = payload(net)
    state["rng"] = ckpt.rng_state(rng)
    expected = (rng.random(), random.random(), torch.rand(1).item())
    ckpt.save_atomic(state, path)
    loaded = ckpt.load(path)
    ckpt.check(loaded, path, {"step": 0, "next_log": 0}, set(), {"net": net})
    fresh = np.random.default_rng(99)
    ckpt.set_rng_state(loaded["rng"], fresh)
    assert (fresh.random(), random.random(), torch.rand(1).item()) == expected
    other = nn.Linear(3, 2)
    ckpt.restore(other, loaded, "net")
    assert torch.equal(other.weight, net.weight)


def test_layout_check_names_the_key(tmp_path):
    net = nn.Linear(3, 2)
    path = tmp_path / "c.pt"
    for mutate, needle in [(lambda s: s["rng"].pop("numpy"), "'rng.numpy'"),
                           (lambda s: s["counters"].pop("next_log"), "'counters.next_log'"),
                           (lambda s: s["counters"].update(extra=1), "'counters.extra'"),
                           (lambda s: s.update(step="10"), "'step' is not an integer"),
                           (lambda s: s["net"].pop("bias"), "'net.bias'"),
                           (lambda s: s.update(surprise=1), "unknown key 'surprise'")]:
        state = payload(net)
        mutate(state)
        with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
            ckpt.check(state, path, {"step": 0, "next_log": 0}, set(), {"net": net})


def test_other_formats_are_refused(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"step": 1, "counters": {}, "rng": {}, "run": {}}, path)   # what format 1 held
    with pytest.raises(ConfigError, match="has format 1"):
        ckpt.load(path)
    torch.save({"format": 99, "step": 1}, path)
    with pytest.raises(ConfigError, match="has format 99"):
        ckpt.load(path)


def test_config_changes_split_shaping_from_allowed():
    saved = {"seed": 0, "loop": {"total_steps": 100, "log_every": 10}, "optim": {"lr": 1e-3}, "threads": 1,
             "meta": {"ignored": True}}
    current = {"seed": 0, "loop": {"total_steps": 200, "log_every": 10}, "optim": {"lr": 2e-3}, "threads": 2}
    shaping, allowed = ckpt.config_changes(saved, current)
    assert shaping == {"optim.lr": (1e-3, 2e-3)}
    assert allowed == {"loop.total_steps": (100, 200), "threads": (1, 2)}
    assert ckpt.describe(shaping) == "optim.lr: 0.001 → 0.002"


def test_a_key_the_checkpoint_lacks_reads_as_its_default():
    saved = {"loop": {"total_steps": 100}}
    defaults = {"loop": {"total_steps": 0, "precision": "fp32"}}
    assert ckpt.config_changes(saved, {"loop": {"total_steps": 100, "precision": "fp32"}}, defaults) == ({}, {})
    shaping, _ = ckpt.config_changes(saved, {"loop": {"total_steps": 100, "precision": "bf16"}}, defaults)
    assert shaping == {"loop.precision": ("fp32", "bf16")}
    # without defaults a missing key is a change, as before
    assert ckpt.config_changes(saved, {"loop": {"total_steps": 100, "precision": "fp32"}})[0] == \
        {"loop.precision": (None, "fp32")}
