"""Commands that teach: every subcommand's --help has a description, examples, and every option its
help text with a metavar (no type placeholders), unit and default."""

import re
import subprocess
import sys

import pytest
import typer

from fleetsim.cli import app

GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)


def help_text(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "fleetsim", *args, "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_commands_a_newcomer_needs_are_there():
    assert {
        "init",
        "run",
        "sweep",
        "plan",
        "report",
        "models",
        "inspect",
        "gpus",
        "kv",
        "memory",
        "schema",
        "validate",
    } <= set(COMMANDS)
    top = help_text()
    assert "fleetsim init" in top and "--version" in top and "--install-completion" in top


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_a_description_and_examples_and_a_clean_usage_line(name):
    text = help_text(name)
    usage = text.splitlines()[0]
    assert usage.startswith(f"Usage: fleetsim {name}")
    assert not re.search(r"[<>{}]|list\[|\bstr\b|\bint\b|\bpath\b", usage), usage
    assert "Arguments:" not in text or not re.search(r"^\s+\S+ <\w+>", text, re.M), text  # no `NAME <type>`
    description = text.split("\n\n")[1].strip()
    assert len(description) > 20, text
    examples = text.split("Examples:\n", 1)[1].split("\n\n")[0].splitlines()
    commands = [line.strip() for line in examples if line.strip().startswith("fleetsim ")]
    assert 1 <= len(commands) <= 3 and all(c.startswith(f"fleetsim {name}") for c in commands), examples


def _options():
    for name in COMMANDS:
        for p in GROUP.commands[name].params:
            yield pytest.param(name, p, id=f"{name}-{p.name}")


@pytest.mark.parametrize("name, param", list(_options()))
def test_every_option_has_help_a_metavar_and_its_default(name, param):
    assert (param.help or "").strip(), f"fleetsim {name}: {param.name} has no help text"
    if param.param_type_name != "option":
        assert param.metavar and "<" not in param.metavar, param.metavar
        return
    if param.is_flag:
        return
    assert param.metavar and re.fullmatch(r"[A-Z0-9=,.\[\]|:/_-]+|local\|tcp://HOST:PORT", param.metavar), (
        f"fleetsim {name} {param.opts[0]}: metavar {param.metavar!r}"
    )
    if param.required:
        return
    if param.default is None:
        assert "Default" in param.help, f"fleetsim {name} {param.opts[0]}: say what no value means"
    else:
        assert param.show_default, f"fleetsim {name} {param.opts[0]}: its default is not shown"


def test_memory_context_default_is_a_typical_request_and_says_so():
    assert "Default: 2,048" in help_text("memory")
