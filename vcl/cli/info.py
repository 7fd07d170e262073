"""vcl info: what any vcl file is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vcl.cli.common import vcl_command


@vcl_command
def run(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="PATH",
            help="A store (.zarr), a manifest (.jsonl), a pretrain run directory (or one of "
            "its files), a retrieve index (or its .json metadata), a .npy array, a --config "
            "file (.toml), a video file or a frame folder.",
            show_default=False,
        ),
    ],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the description as JSON on stdout instead of a summary on stderr."
        ),
    ] = False,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify",
            help="Skip the slow checks: that every chunk of a store is present, an "
            "index's sha256 against its metadata, and decoding every frame of a video.",
        ),
    ] = False,
) -> None:
    """Describe any vcl file and check it.

    Validates the file as the stages that read it would, so a malformed line, an
    unknown schema version or an interrupted write is reported here too. A store of a
    kind vcl does not write (another tool's descriptors, read by vcl fisher fit) is
    described with a note that its version is not checked. Run directories and
    indexes are read from their JSON metadata; checkpoints and indexes are not loaded.
    """
    from vcl.console import err_console
    from vcl.io.describe import describe

    description = describe(path, verify=not no_verify)
    if as_json:
        typer.echo(json.dumps(description, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title=str(path), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in description.items():
        if key == "path":
            continue
        if isinstance(value, dict) and key == "arrays":
            value = "\n".join(f"{n}: {v['shape']} {v['dtype']}" for n, v in value.items())
        elif isinstance(value, dict) and key == "failed":
            more = ", …" if value["count"] > len(value["first"]) else ""
            value = f"{value['count']}: {', '.join(value['first'])}{more}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        table.add_row(key, str(value))
    err_console.print(table)


EXAMPLES = [
    ("Summarise a manifest on stderr:", "vcl info data/videos.jsonl"),
    ("A pretrain run: method, arch, epochs done and asked:", "vcl info run/"),
    (
        "The description of a store as JSON, for scripts:",
        "vcl info proposals.zarr --json | jq .rows",
    ),
]
