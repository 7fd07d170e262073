"""What every command shares: the error decorator, -q/-v/--config, and common options.

``vcl_command`` wraps a command function so that a :class:`~vcl.errors.VclError`
becomes one ``error:`` line on stderr and its exit code (see ``vcl.errors.ExitCode``),
Ctrl-C exits 130, and an unexpected exception exits 70 with a one-line summary (the
traceback with ``-v``). It also adds ``-q/--quiet``, ``-v/--verbose`` and
``--config FILE.toml`` to the command, so all commands take them the same way.
"""

from __future__ import annotations

import functools
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from vcl.errors import ExitCode, UsageError, VclError


def fail(message: str, code: int) -> typer.Exit:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return typer.Exit(code)


def _config_key(key: str) -> str:
    return key.replace("-", "_")


def _config_table(ctx: typer.Context) -> tuple[list[str], set[str]]:
    """The TOML table path of this command and the sub-table names it must skip.

    ``vcl synth`` reads ``[synth]``; a group's default command (``vcl proposals``, i.e.
    ``proposals run``) reads the group's table ``[proposals]``, whose sub-tables belong
    to its other commands (``[track.eval]`` for ``vcl track eval``).
    """
    path: list[str] = []
    node: Any = ctx
    while node is not None and node.parent is not None:
        path.append(node.info_name or "")
        node = node.parent
    path.reverse()
    siblings: set[str] = set()
    if len(path) == 2 and path[1] == "run":
        siblings = set(getattr(ctx.parent.command, "commands", {})) - {"run"}
        path = path[:1]
    return path, siblings


def load_config(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> None:
    """Eager ``--config``: TOML keys become option defaults; flags still override.

    Top-level keys apply to every command that has such an option (``seed = 1``,
    ``device = "cuda"``); a table named after the command (``[synth]``, ``[proposals]``,
    ``[track.eval]``) applies to that command only and must name its options.
    """
    if value is None:
        return
    import tomllib

    try:
        data = tomllib.loads(Path(value).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail(f"{value}: no such config file", ExitCode.NO_INPUT) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise fail(f"{value}: not valid TOML ({exc})", ExitCode.USAGE) from None
    params = {p.name: p for p in ctx.command.params if p.name not in ("config",)}
    names = set(params)
    path, siblings = _config_table(ctx)
    table = ".".join(path)
    defaults = {
        _config_key(k): _config_value(params[_config_key(k)], v)
        for k, v in data.items()
        if not isinstance(v, dict) and _config_key(k) in names
    }
    section: Any = data
    for part in path:
        section = section.get(part, {}) if isinstance(section, dict) else None
    if not isinstance(section, dict):
        raise fail(f"{value}: [{table}] must be a table", ExitCode.USAGE)
    for key, val in section.items():
        if key in siblings and isinstance(val, dict):
            continue  # [group.command]: another command's table
        if _config_key(key) not in names:
            raise fail(
                f"{value}: [{table}] has unknown option {key!r}; see vcl {' '.join(path)} --help",
                ExitCode.USAGE,
            )
        defaults[_config_key(key)] = _config_value(params[_config_key(key)], val)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def _config_value(param: Any, value: Any) -> Any:
    """A TOML value as the option's default: one value for an option that takes several
    (``videos = "videos.jsonl"`` for ``--videos``) becomes a list of one."""
    if (param.multiple or param.nargs == -1) and not isinstance(value, list):
        return [value]
    return value


_EXTRA_PARAMS = {
    "quiet": (Annotated[bool, typer.Option("--quiet", "-q", help="Only print errors.")], False),
    "verbose": (
        Annotated[
            bool,
            typer.Option("--verbose", "-v", help="Print debug messages, and tracebacks on errors."),
        ],
        False,
    ),
    "config": (
        Annotated[
            Path | None,
            typer.Option(
                "--config",
                metavar="FILE.toml",
                is_eager=True,
                callback=load_config,
                help="Read option defaults from a TOML file (flags override it).",
            ),
        ],
        None,
    ),
}


def _internal(exc: Exception, verbose: bool) -> typer.Exit:
    """A bug in vcl: one line asking for a report (the traceback with -v)."""
    if verbose:
        traceback.print_exc()
    hint = "" if verbose else " (rerun with -v for the traceback)"
    return fail(
        f"internal error: {type(exc).__name__}: {exc}; please report it{hint}",
        ExitCode.INTERNAL,
    )


def _stdout_broken() -> bool:
    """Whether writing to stdout failed (``vcl.cli.entry.GuardedStdout``); it is then
    swapped for /dev/null so that Python's own flush at exit adds no second error."""
    import os

    if not getattr(sys.stdout, "failed", False):
        return False
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
    return True


def vcl_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add -q/-v/--config to a typer command and map its errors to exit codes."""
    from vcl.console import configure

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        quiet: bool = False,
        verbose: bool = False,
        config: Path | None = None,
        **kwargs: Any,
    ) -> Any:
        configure(quiet=quiet, verbose=verbose)
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a full disk under stdout fails here, not silently at exit
            return result
        except VclError as exc:
            if verbose:
                traceback.print_exc()
            raise fail(exc.message, exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", ExitCode.INTERRUPTED) from None
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except BrokenPipeError:
            raise typer.Exit(0) from None
        except OSError as exc:
            if not _stdout_broken():
                raise _internal(exc, verbose) from None
            raise fail(
                f"stdout: cannot write ({exc.strerror or exc})", ExitCode.CANNOT_CREATE
            ) from None
        except Exception as exc:
            raise _internal(exc, verbose) from None

    signature = inspect.signature(fn, eval_str=True)
    extra = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotated
        )
        for name, (annotated, default) in _EXTRA_PARAMS.items()
    ]
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *extra]
    )
    wrapper.__annotations__ = {
        **getattr(fn, "__annotations__", {}),
        **{name: spec[0] for name, spec in _EXTRA_PARAMS.items()},
    }
    return wrapper


def report_json(value: object, indent: int | None = None) -> str:
    """JSON with NaN / inf as null: bare NaN is not JSON, and jq or a browser reject it."""
    import json
    import math

    def finite(v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(value), allow_nan=False, indent=indent)


def parse_shard_option(value: str | None) -> tuple[int, int] | None:
    from vcl.parallel import parse_shard

    if value is None:
        return None
    try:
        return parse_shard(value)
    except ValueError as exc:
        raise UsageError(str(exc), "--shard") from None


def parse_number_list(
    text: str,
    option: str,
    kind: type = int,
    minimum: float | None = None,
    maximum: float | None = None,
    example: str = "1,5,10",
) -> list:
    """``"1,5,10"`` -> ``[1, 5, 10]`` for list-valued options; a usage error otherwise."""
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(
            f"not a comma-separated list of {kind.__name__}s: {text!r}", option, f"e.g. {example}"
        ) from None
    if not values:
        raise UsageError("needs at least one value", option, f"e.g. {example}")
    if (minimum is not None and min(values) < minimum) or (
        maximum is not None and max(values) > maximum
    ):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise UsageError(f"values must be {bounds}", option, f"e.g. {example}")
    return values


# Shared options: the same names, defaults and help in every command.
Layer = Annotated[
    str | None,
    typer.Option(
        "--layer",
        help="Which layer of a multi-layer features store to read (default: the store's "
        "default_layer, pool when embedded).",
    ),
]
Videos = Annotated[
    list[str],
    typer.Argument(
        metavar="VIDEOS...",
        help="Video files, frame folders, folders of them, or videos manifests "
        "(.jsonl; - for one on stdin).",
        show_default=False,
    ),
]
Features = Annotated[
    list[Path],
    typer.Argument(
        metavar="FEATURES...",
        help="A vcl.features store, or an .npy array (N×D; ids are row numbers or --ids); "
        "several stores (shards of one run) read as their merge.",
        show_default=False,
    ),
]
Seed = Annotated[
    int, typer.Option("--seed", help="Seed for every random choice (recorded in the output).")
]
Workers = Annotated[
    int,
    typer.Option("--workers", min=0, help="Worker processes over videos (0: one per CPU core)."),
]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        help="Process only shard I of N (0-based; a stable hash of each id picks its shard; "
        "images in vcl embed: the I-th of N equal runs of rows).",
    ),
]
Device = Annotated[
    str,
    typer.Option(
        "--device", help="auto, cpu, cuda, cuda:N or mps; auto takes an accelerator when present."
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]


class DefaultCommandGroup(TyperGroup):
    """A command group whose main subcommand can be left out.

    ``vcl proposals VIDEOS -o p.zarr`` runs the group's ``run`` subcommand, while
    ``vcl proposals eval p.zarr --gt gt.jsonl`` runs ``eval``: when the first argument
    is not a subcommand name (or help), ``run`` is put in front of the arguments.
    """

    default_command = "run"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def command_group(help: str, default: str | None = "run") -> typer.Typer:
    """A typer app for a stage made of subcommands.

    With ``default="run"`` (``vcl proposals VIDEOS`` / ``vcl proposals eval ...``) the
    main work is ``@group.command("run")`` and may be called without its name; with
    ``default=None`` every subcommand is named (``vcl fisher fit``, ``vcl fisher
    encode``). The first line of ``help`` is what ``vcl --help`` lists.
    """
    settings = {
        "help": help,
        "no_args_is_help": True,
        "add_completion": False,
        "pretty_exceptions_enable": False,
        "rich_markup_mode": None,
        "context_settings": {"help_option_names": ["-h", "--help"]},
    }
    if default is None:
        return typer.Typer(**settings)

    class Group(DefaultCommandGroup):
        default_command = default

    return typer.Typer(cls=Group, **settings)
