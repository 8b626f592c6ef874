"""The `fleetsim` command: the app, its commands in a newcomer's order, and the entry point where
every error becomes one line and an exit status."""

from __future__ import annotations

import sys
import warnings

import typer
from typer.core import TyperCommand

from fleetsim.cli import catalog, fidelity, memory, simulation, study
from fleetsim.cli.terminal import error_line, show_warning
from fleetsim.errors import FleetsimError

HELP = """fleetsim: how many of which GPU to serve an LLM at a load within latency targets, and what it
costs in $, kW and cooling.

\b
Start here:
  fleetsim init my.yaml          write a commented starter scenario
  fleetsim run my.yaml           simulate it
  fleetsim COMMAND --help        every option with its unit and default, and examples
"""


class Command(TyperCommand):
    """Usage lines with metavars only: `fleetsim run [OPTIONS] SCENARIO`, not `{scenario}` or
    `<path>` type placeholders."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for p in self.params:
            if getattr(p, "param_type_name", "") == "argument":
                p.display_type_rich = lambda ctx: ""  # type: ignore[method-assign]

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [piece.replace("{", "").replace("}", "") for piece in super().collect_usage_pieces(ctx)]


app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    help=HELP,
)


def _print_version(value: bool) -> None:
    if value:
        from fleetsim import __version__

        sys.stdout.write(f"fleetsim {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print fleetsim's version and exit."
    ),
):
    pass


COMMANDS = (
    simulation.init,
    simulation.run,
    study.sweep,
    study.plan,
    study.report,
    catalog.models,
    catalog.inspect,
    catalog.gpus,
    memory.kv,
    memory.memory,
    simulation.schema,
    fidelity.validate,
    fidelity.calibrate,
)
for _command in COMMANDS:
    app.command(cls=Command)(_command)


def _usage_error_types() -> tuple:
    """Click's usage errors: typer's bundled click, and the click package where it is installed."""
    types: list[type] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            types.append(__import__(module, fromlist=["ClickException"]).ClickException)
        except ImportError:
            pass
    return tuple(types)


def main() -> None:
    """The entry point (`fleetsim`, `python -m fleetsim`): bad input is one line and exit status 2;
    a warning (FleetsimWarning or another) is one line, `warning: MESSAGE`."""
    previous = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        _main()
    finally:
        warnings.showwarning = previous


def _main() -> None:
    try:
        code = app(prog_name="fleetsim", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except FleetsimError as exc:
        error_line(str(exc))
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except KeyboardInterrupt:  # typer turns most into exit status 130 itself
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:  # usage errors arrive here in non-standalone mode
        if isinstance(exc, _usage_error_types()):
            command = getattr(getattr(exc, "ctx", None), "command_path", None) or "fleetsim"
            error_line(f"{exc.format_message()} (see {command} --help)")
            sys.exit(2)
        raise
