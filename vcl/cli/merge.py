"""vcl merge: combine the outputs of sharded runs into one store or JSONL file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vcl.cli.common import Overwrite, vcl_command


@vcl_command
def run(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="OUTPUTS...",
            help="Stores (.zarr) or JSONL files of one schema, e.g. the outputs of --shard I/N; "
            "one JSONL input may be - (stdin).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="The merged store or JSONL file to write; - writes merged JSONL to stdout.",
            show_default=False,
        ),
    ],
    allow_overlap: Annotated[
        bool,
        typer.Option(
            "--allow-overlap",
            help="Keep the first input's copy of an id found in several inputs instead of failing.",
        ),
    ] = False,
    overwrite: Overwrite = False,
) -> None:
    """Merge shard outputs into one store or JSONL file.

    Stores must have the same vcl_schema, parameters (shard options aside), seed,
    columns and plain arrays; the merged store holds the groups (videos) of the first
    input in its order, then the second's, and so on. JSONL files must hold lines of
    one schema; they are concatenated in input order, paths rewritten for the merged
    file's folder. One JSONL input may be - (stdin, its relative paths taken from the
    working directory), and -o - writes the merged lines to stdout (paths absolute)
    once every input has been read and checked; stores need paths. Ids found in two
    inputs are refused unless --allow-overlap. Written atomically; a killed store merge
    resumes. Prints a JSON summary on stdout, or on stderr when stdout carries the
    merged lines.
    """
    from vcl.console import log
    from vcl.merge import merge

    summary = merge(inputs, output, allow_overlap=allow_overlap, overwrite=overwrite)
    if str(output) == "-":  # stdout carries the merged lines: the summary goes to stderr
        log.info("%s", json.dumps(summary))
    else:
        typer.echo(json.dumps(summary))
    log.info("merged %d inputs into %s", len(inputs), output)


EXAMPLES = [
    (
        "Proposals in 3 shards, then merged:",
        "for i in 0 1 2; do vcl proposals videos.jsonl --shard $i/3 -o p.$i.zarr; done && "
        "vcl merge p.0.zarr p.1.zarr p.2.zarr -o proposals.zarr",
    ),
    (
        "Tracks of several shards into one JSONL file:",
        "vcl merge tracks.*.jsonl -o tracks.jsonl",
    ),
    (
        "A shard piped in (stdin, -), merged with another, straight into the next stage:",
        "zcat tracks.1.jsonl.gz | vcl merge tracks.0.jsonl - -o - | "
        "vcl crops - --videos videos.jsonl -o crops.zarr",
    ),
]
