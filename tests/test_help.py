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
