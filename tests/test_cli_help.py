"""Every flag of every command is documented in --help (text, and its default where it has one)."""

from __future__ import annotations

import argparse

import pytest

from mtc_analog.cli import COMMAND_MODULES, build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", COMMAND_MODULES)
def test_every_flag_has_help_and_shows_its_default(command):
    parser = _commands()[command]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        assert action.help and action.help.strip(), f"{command} {name}: no help text"
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            forms = {str(action.default)}
            if isinstance(action.default, float):
                forms.add(f"{action.default:g}")
            assert any(f in text for f in forms), f"{command} {name}: default {action.default!r} not shown in --help"
