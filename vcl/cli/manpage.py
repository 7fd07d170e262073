"""Man pages generated from typer's own command tree (click-man cannot see typer options).

``python -m vcl.cli.manpage [DIR]`` writes ``vcl.1`` and ``vcl-<command>.1`` into DIR
(default ``man/``); a test regenerates them and fails when the committed pages are stale.
Examples come from each command module's ``EXAMPLES`` list.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer.main

from vcl import __version__
from vcl.errors import EXIT_CODE_MEANINGS

_TYPE_NAMES = {int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH"}


def _esc(text: str) -> str:
    """Escape text for roff: backslashes, hyphens, and leading dots or quotes."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def _paragraphs(text: str) -> str:
    blocks = [" ".join(b.split()) for b in text.strip().split("\n\n") if b.strip()]
    return "\n.PP\n".join(_esc(b) for b in blocks)


def _metavar(param: Any) -> str:
    if param.metavar:
        return param.metavar
    annotation = param.type_descriptor.annotation
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", "VALUE").upper())


def _option_entry(param: Any) -> str:
    names = ", ".join(f"\\fB{_esc(o)}\\fR" for o in sorted(param.opts, key=len))
    head = names if param.is_flag else f"{names} \\fI{_esc(_metavar(param))}\\fR"
    text = param.help or ""
    if not param.is_flag and param.default not in (None, "", ()):
        text += f" (default: {param.default})"
    return f".TP\n{head}\n{_esc(text)}"


def _exit_status() -> str:
    rows = [
        f".TP\n\\fB{int(code)}\\fR\n{_esc(meaning)}" for code, meaning in EXIT_CODE_MEANINGS.items()
    ]
    return ".SH EXIT STATUS\n" + "\n".join(rows)


def _examples(examples: list[tuple[str, str]]) -> str:
    if not examples:
        return ""
    rows = [f"{_esc(what)}\n.PP\n.RS\n.nf\n{_esc(cmd)}\n.fi\n.RE" for what, cmd in examples]
    return ".SH EXAMPLES\n" + "\n.PP\n".join(rows)


def _header(name: str, summary: str) -> str:
    return (
        f'.TH {name.upper()} 1 "" "vcl {__version__}" "vcl manual"\n'
        f".SH NAME\n{_esc(name)} \\- {_esc(summary)}"
    )


def _synopsis_argument(param: Any) -> str:
    """``NAME``, ``NAME...`` when it takes several, in brackets when it may be left out
    (click's metavar may carry the dots already)."""
    name = (param.metavar or param.name.upper()).removesuffix("...")
    text = f"\\fI{_esc(name)}\\fR" + ("..." if param.nargs == -1 else "")
    return text if param.required else f"[{text}]"


def command_page(name: str, command: Any, examples: list[tuple[str, str]]) -> str:
    """The page of ``vcl NAME`` (NAME may be ``group sub``)."""
    summary = (command.help or "").partition("\n")[0]
    arguments = [p for p in command.params if not hasattr(p, "is_flag")]
    options = [p for p in command.params if hasattr(p, "is_flag") and not p.hidden]
    synopsis = " ".join(_synopsis_argument(p) for p in arguments)
    parts = [
        _header(f"vcl-{name.replace(' ', '-')}", summary.strip().rstrip(".")),
        f".SH SYNOPSIS\n\\fBvcl {name}\\fR [\\fIOPTIONS\\fR] {synopsis}",
        ".SH DESCRIPTION\n" + _paragraphs(command.help or ""),
    ]
    if arguments:
        parts.append(
            ".SH ARGUMENTS\n"
            + "\n".join(
                f".TP\n\\fI{_esc(p.metavar or p.name.upper())}\\fR\n{_esc(p.help or '')}"
                for p in arguments
            )
        )
    parts.append(".SH OPTIONS\n" + "\n".join(_option_entry(p) for p in options))
    parts += [_exit_status(), _examples(examples), ".SH SEE ALSO\n\\fBvcl\\fR(1)"]
    return "\n".join(p for p in parts if p) + "\n"


def leaf_commands() -> list[tuple[str, Any, Any]]:
    """Every runnable command as ``(name, click command, module)``, groups flattened.

    A group's default ``run`` subcommand is named like the group (``proposals``); its
    other subcommands get the group's name in front (``proposals eval``).
    """
    from vcl.cli.app import COMMANDS, app

    group = typer.main.get_command(app)
    modules = dict(COMMANDS)
    leaves = []
    for name in group.list_commands(None):
        command = group.commands[name]
        if hasattr(command, "commands"):
            for sub, subcommand in command.commands.items():
                full = name if sub == "run" else f"{name} {sub}"
                leaves.append((full, subcommand, modules[name]))
        else:
            leaves.append((name, command, modules[name]))
    return leaves


def _examples_for(full_name: str, module: Any) -> list[tuple[str, str]]:
    """A module's EXAMPLES; for a group, those whose command line runs this subcommand."""
    examples = getattr(module, "EXAMPLES", [])
    group = getattr(module, "app", None)
    if group is None:
        return examples
    group_name, _, sub = full_name.partition(" ")
    subcommands = set(typer.main.get_command(group).commands)

    def subcommand_of(command_line: str) -> str:
        tokens = command_line.split()
        at = tokens.index(group_name) + 1 if group_name in tokens else len(tokens)
        word = tokens[at] if at < len(tokens) else ""
        return word if word in subcommands else "run"

    return [ex for ex in examples if subcommand_of(ex[1]) == (sub or "run")]


def main_page(leaves: list[tuple[str, Any, Any]]) -> str:
    commands = "\n".join(
        f".TP\n\\fBvcl\\-{_esc(n.replace(' ', '-'))}\\fR(1)\n"
        f"{_esc((c.help or '').partition(chr(10))[0])}"
        for n, c, _ in leaves
    )
    conventions = (
        "Stages exchange zarr stores and JSONL manifests, so each can be piped, swapped, "
        "rerun or sharded. stdout carries data only (JSONL or JSON); progress bars, tables "
        "and messages go to stderr. A path of - means stdin or stdout; a command reading "
        "stdin refuses to wait on a terminal.\n\n"
        "Every command takes -q/--quiet, -v/--verbose and --config FILE.toml, whose keys "
        "set option defaults (top-level keys for any command, a [command] table for one); "
        "flags override it. Commands that work on videos take --workers N and --shard I/N; "
        "GPU stages take --device auto|cpu|cuda|cuda:N|mps, and asking for an absent "
        "device exits 69. Every output records the command line, parameters, seed and vcl "
        "version, and is written atomically: an interrupted run leaves only NAME.partial, "
        "which readers refuse and a rerun resumes.\n\n"
        "A user mistake prints one line, error: FILE: PROBLEM; WHAT TO DO, and no "
        "traceback (-v shows it)."
    )
    modules = {id(m): m for _, _, m in leaves}.values()
    examples = [ex for m in modules for ex in getattr(m, "EXAMPLES", [])[:1]][:8]
    parts = [
        _header("vcl", "composable tools for unsupervised representation learning from video"),
        ".SH SYNOPSIS\n\\fBvcl\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]...\n.br\n"
        "\\fBvcl\\fR \\-\\-version",
        ".SH DESCRIPTION\n" + _paragraphs(conventions),
        ".SH COMMANDS\n" + commands,
        _exit_status(),
        _examples(examples),
    ]
    return "\n".join(p for p in parts if p) + "\n"


def render_pages() -> dict[str, str]:
    """File name -> roff text for ``vcl.1`` and every ``vcl-<command>.1``."""
    leaves = leaf_commands()
    pages = {"vcl.1": main_page(leaves)}
    for name, command, module in leaves:
        pages[f"vcl-{name.replace(' ', '-')}.1"] = command_page(
            name, command, _examples_for(name, module)
        )
    return pages


USAGE = "usage: python -m vcl.cli.manpage [OUT_DIR]   (writes OUT_DIR/vcl*.1; default: man)"


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) > 1 or (args and args[0].startswith("-")):  # --help is not a folder
        print(USAGE, file=sys.stderr)
        raise SystemExit(0 if args and args[0] in ("-h", "--help") else 2)
    out = Path((args or ["man"])[0])
    out.mkdir(parents=True, exist_ok=True)
    pages = render_pages()
    for stale in out.glob("vcl*.1"):
        if stale.name not in pages:
            stale.unlink()
    for name, text in pages.items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(pages)} man pages to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
