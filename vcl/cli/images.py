"""vcl images: build an images manifest (vcl.image/1) from image files, folders or VOC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcl.cli.common import Overwrite, vcl_command


@vcl_command
def run(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="IMAGE",
            help="Image files, or folders whose jpg/png files are listed (not their "
            "subfolders); ids are the names without extension, as vcl embed gives a folder's.",
            show_default=False,
        ),
    ] = None,
    voc: Annotated[
        Path | None,
        typer.Option(
            "--voc",
            metavar="DIR",
            help="A PASCAL VOC year folder (VOCdevkit/VOC2007): its JPEGImages with labels "
            "from ImageSets/Main/<class>_{trainval,test}.txt: label (classes marked 1), "
            "difficult (marked 0) and split (trainval → train, test → test).",
        ),
    ] = None,
    output: Annotated[
        str, typer.Option("-o", "--output", help="Manifest to write (- for stdout).")
    ] = "-",
    overwrite: Overwrite = False,
) -> None:
    """List images into a manifest; --voc adds VOC labels and splits.

    One vcl.image/1 line per image (id, path) for vcl embed. With --voc, each line
    also gets its present classes (label, 'a|b'), its difficult ones (difficult: the
    classes vcl probe svm leaves out for that image, Goyal et al.'s VOC07 protocol)
    and its split; images of JPEGImages that no class file lists are left out with a
    warning. The manifest is written only once every class file has been read.
    """
    from collections import Counter

    from vcl.console import log
    from vcl.errors import UsageError
    from vcl.io.images import list_image_records, read_voc
    from vcl.io.manifest import RecordWriter

    if voc is not None and inputs:
        raise UsageError("give image files and folders, or --voc DIR, not both")
    if voc is None and not inputs:
        raise UsageError("no images", None, "give image files or folders, or --voc DIR")
    with RecordWriter(output, overwrite=overwrite) as writer:  # an output in the way: first
        records = read_voc(voc) if voc is not None else list_image_records(inputs or [])
        writer.write_all(records)  # all read: no half manifest on stdout or in a .partial
    if voc is None:
        log.info("%d images listed", writer.count)
        return
    splits = Counter(r.split for r in records)
    log.info(
        "%d images listed (%s); %d with difficult classes, %d with no present class",
        writer.count,
        ", ".join(f"{n} {s}" for s, n in sorted(splits.items())),
        sum("difficult" in r.extra for r in records),
        sum(r.label is None for r in records),
    )


EXAMPLES = [
    (
        "The VOC2007 trainval and test images with labels, difficult classes and splits "
        "(the VOC07 SVM benchmark of vcl probe svm):",
        "vcl images --voc VOCdevkit/VOC2007 -o voc07.jsonl",
    ),
    ("Every jpg/png of two folders:", "vcl images photos/ more/ -o images.jsonl"),
]
