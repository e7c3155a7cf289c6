"""Every subcommand's --help lists every option with a description and its default, and --version works."""
import argparse

import pytest

from conftest import run_cli
from rlsmooth.cli import DefaultsFormatter, build_parser


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("name", sorted(subparsers()))
def test_every_option_has_a_description_and_a_default(name):
    parser = subparsers()[name]
    formatter = DefaultsFormatter(name)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.dest}: no description"
        if action.option_strings:
            text = formatter._get_help_string(action)
            assert "default" in text, f"{name} {action.option_strings[0]}: its help states no default"


def test_help_and_version_print_without_error():
    assert run_cli("eval", "--help", check=True).stdout.count("default") >= 3
    proc = run_cli("--version", check=True)
    assert proc.stdout.startswith("rlsmooth ")


def test_config_prints_every_key_with_its_value_default_and_docstring():
    from conftest import ROOT, assert_one_line_error
    out = run_cli("config", ROOT / "configs" / "minatar_dqn.yaml", "optim.lr=0.001", check=True).stdout
    assert "algo.learning_starts = 5000 (default: 20000)   # Agent steps of pure exploration" in out
    assert "optim.lr = 0.001 (default:" in out and "loop.total_steps = 5000000" in out
    from rlsmooth.agents.preflight import load_train_config
    from rlsmooth.config.coerce import to_dict
    from rlsmooth.config.yaml_files import load_yaml
    from rlsmooth.training.checkpoint import flatten
    keys = flatten(to_dict(load_train_config(load_yaml(ROOT / "configs" / "minatar_dqn.yaml"))))
    assert all(f"  {k} = " in out for k in keys)   # every key, none left out
    assert all("#" in line for line in out.splitlines()[1:]), "a key without its docstring"
    assert_one_line_error(run_cli("config", ROOT / "configs" / "minatar_dqn.yaml", "optim.nope=1"), "optim.nope")
