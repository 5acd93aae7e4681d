"""The two command lines speak alike: option names, --help, --version, errors."""

from __future__ import annotations

import argparse

import pytest

from ganaug.cli import _parser as ganaug_parser
from ganaug.cli import main as ganaug_main
from ganomaly.cli import _parser as ganomaly_parser
from ganomaly.cli import main as ganomaly_main

PARSERS = {"ganaug": ganaug_parser, "ganomaly": ganomaly_parser}
MAINS = {"ganaug": ganaug_main, "ganomaly": ganomaly_main}


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("tool", sorted(PARSERS))
def test_version(tool, capsys):
    assert MAINS[tool](["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"{tool} (gankit ")


@pytest.mark.parametrize("tool", sorted(PARSERS))
def test_help_shows_every_default_and_explains_every_argument(tool):
    for name, command in _commands(PARSERS[tool]()).items():
        text = command.format_help()
        for action in command._actions:
            if action.help == argparse.SUPPRESS or isinstance(
                action, argparse._HelpAction
            ):
                continue
            assert action.help, f"{tool} {name} {action.dest}: no help"
            default = action.default
            shown = not any(default is v for v in (None, False, argparse.SUPPRESS))
            if shown and action.option_strings:
                flag = action.option_strings[-1]
                entry = text.split("options:", 1)[1].split(f"  {flag}", 1)[1]
                assert "default" in entry.split("\n  -", 1)[0], (tool, name, flag)


SHARED = ["--n-epochs", "--batch-size", "--random-state", "--device", "--threads"]


def test_shared_options_are_spelt_alike():
    fit = {t: _commands(p())["fit"] for t, p in PARSERS.items()}
    for option in SHARED:
        for tool, command in fit.items():
            flags = [f for a in command._actions for f in a.option_strings]
            assert option in flags, (tool, option)


@pytest.mark.parametrize(
    ("tool", "argv", "dest", "value"),
    [
        ("ganaug", ["fit", "d", "-o", "m", "--epochs", "3"], "n_epochs", 3),
        ("ganaug", ["fit", "d", "-o", "m", "--seed", "5"], "random_state", 5),
        ("ganaug", ["demo", "--epochs", "4"], "n_epochs", 4),
        ("ganomaly", ["fit", "t", "-o", "m", "--seed", "5"], "random_state", 5),
        (
            "ganomaly",
            ["score", "m", "i", "-o", "o", "--score-threads", "2"],
            "score_threads",
            2,
        ),
        ("ganomaly", ["--threads", "3", "fit", "t", "-o", "m"], "threads", 3),
        ("ganomaly", ["fit", "t", "-o", "m", "--threads", "3"], "threads", 3),
        ("ganomaly", ["fit", "t", "-o", "m"], "threads", 1),
    ],
)
def test_older_spellings_still_work_but_are_not_shown(tool, argv, dest, value):
    parser = PARSERS[tool]()
    assert getattr(parser.parse_args(argv), dest) == value
    command = _commands(parser)[argv[0] if not argv[0].startswith("-") else argv[2]]
    for old in ("--epochs", "--seed", "--score-threads"):
        assert old not in command.format_help()
