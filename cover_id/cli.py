"""The ``cover-id`` command line.

Subcommands are entry points in the ``cover_id.commands`` group and are only
imported when they run: ``cover-id --help`` lists them from the short help
below (or the entry point's target for third-party commands) without
importing any of them, so it never pulls in torch, cv2, faiss or numpy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer import _click as click  # typer 0.29 ships its own copy of click (pinned in pyproject.toml)
from typer._click import exceptions as click_errors
from typer.core import TyperGroup

from cover_id import __version__
from cover_id.errors import CoverIdError

BUILTIN_HELP = {
    "index": "Embed a folder or catalog of reference images into an index.",
    "identify": "Identify which reference each photo shows.",
    "verify": "Measure how reliably an index tells its references apart.",
    "train": "Train a projection head that separates the references better.",
    "serve": "Run the HTTP service and web page.",
    "info": "Show what an index holds.",
    "plugins": "List installed commands, encoders, detectors and re-rankers.",
}
ORDER = ["index", "identify", "verify", "train", "serve", "info", "plugins"]


class LazyGroup(TyperGroup):
    """A click group whose commands are entry points, loaded on first use."""

    def _entry_points(self) -> dict[str, Any]:
        from cover_id.plugins import available

        return available("commands")

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(self._entry_points())
        return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        eps = self._entry_points()
        if cmd_name not in eps:
            return None
        target = eps[cmd_name].load()
        command = typer.main.get_command(target) if isinstance(target, typer.Typer) else target
        command.name = cmd_name
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name, ep in sorted(self._entry_points().items(), key=lambda kv: self.list_commands(ctx).index(kv[0])):
            rows.append((name, BUILTIN_HELP.get(name, f"(plugin {ep.value})")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=LazyGroup,
    help="cover-id: tell which item of your collection a photo shows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cover-id {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    config: Path | None = typer.Option(
        None, "--config", help="YAML settings file (default: ./cover-id.yaml if present)."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """cover-id: tell which item of your collection a photo shows."""
    from cover_id.config import set_config_path

    if config is not None and not config.is_file():  # whether or not this command reads settings
        raise CoverIdError(f"config file not found: {config}")
    set_config_path(config)


def _fail(message: str, code: int) -> NoReturn:
    """One ``error: ...`` line on stderr (newlines folded), then exit."""
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    sys.stderr.flush()
    sys.exit(code)


def _usage_message(exc: Any) -> str:
    """Click's message plus where to look for help: ``missing option '--index' (see `cover-id identify --help`)``."""
    text = exc.format_message().rstrip(".")
    text = text[:1].lower() + text[1:]
    if isinstance(exc, click_errors.NoSuchOption) and not exc.option_name.startswith("--"):
        text += " (for a file whose name starts with -, write ./ before it or put -- before the files)"
    ctx = getattr(exc, "ctx", None)
    return f"{text} (see `{ctx.command_path} --help`)" if ctx is not None else text


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: user errors become one ``error: ...`` line on stderr.

    Exit codes: 2 for usage errors (unknown or missing options, bad values) and
    for :class:`CoverIdError`; 130 when interrupted; a command's own code otherwise.
    """
    try:
        rc = app(args=argv, prog_name="cover-id", standalone_mode=False)
        if rc == 130:  # Ctrl-C inside a command: typer catches it and returns 130 (it does not raise)
            raise KeyboardInterrupt
        if isinstance(rc, int) and rc:  # typer.Exit(n) comes back as a return value here
            sys.exit(rc)
    except click_errors.NoArgsIsHelpError as exc:  # bare `cover-id`: the help is the answer
        sys.stdout.write(exc.format_message() + "\n")
        sys.exit(0)
    except click_errors.UsageError as exc:
        _fail(_usage_message(exc), 2)
    except click_errors.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code or 1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except CoverIdError as exc:
        _fail(str(exc), 2)
    except BrokenPipeError:  # `cover-id identify ... | head`: the reader went away
        sys.stderr = open(os.devnull, "w")
        sys.exit(1)


if __name__ == "__main__":
    main()
