"""vcl images: build an images manifest (vcl.image/1) from image files, folders, class
folders (ImageNet's layout) or VOC."""

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
            "subfolders); ids are the names without extension, as vcl embed gives a folder's. "
            "With --class-folders, folders of class subfolders.",
            show_default=False,
        ),
    ] = None,
    class_folders: Annotated[
        bool,
        typer.Option(
            "--class-folders",
            help="Each IMAGE folder holds one subfolder per class (ImageNet's train/ and "
            "sorted val/, torchvision's ImageFolder): label = the subfolder's name, id = "
            "<class>/<name without extension>. Images outside a class subfolder are left "
            "out with a warning.",
        ),
    ] = False,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            metavar="NAME",
            help="Set split to NAME on every line (train, test...: vcl probe --split-field "
            "split); not with --voc, which sets VOC's splits.",
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
    """List images into a manifest, with labels and splits.

    One vcl.image/1 line per image (id, path) for vcl embed. With --class-folders, each
    folder holds a subfolder per class (FOLDER/<class>/<image>, as ImageNet's train/ and
    its val/ sorted into class folders): each image's label is its subfolder's name and
    its id <class>/<name> (file names need only be unique within a class). --split NAME
    marks every line; a train and a test manifest concatenated are one --labels file
    for vcl probe --split-field split. With --voc, each line also gets its present
    classes (label, 'a|b'), its difficult ones (difficult: vcl probe svm leaves the
    image out of those classes' test APs, Goyal et al.'s VOC07 protocol) and its split;
    images of JPEGImages that no class file lists are left out with a warning. The
    manifest is written only once every class file has been read.
    """
    from collections import Counter
    from dataclasses import replace

    from vcl.console import log
    from vcl.errors import UsageError
    from vcl.io.images import list_class_folders, list_image_records, read_voc
    from vcl.io.manifest import RecordWriter

    if voc is not None and (class_folders or split is not None):
        flag = "--class-folders" if class_folders else "--split"
        raise UsageError(f"{flag} does not go with --voc, which sets VOC's labels and splits")
    if voc is not None and inputs:
        raise UsageError("give image files and folders, or --voc DIR, not both")
    if voc is None and not inputs:
        raise UsageError("no images", None, "give image files or folders, or --voc DIR")
    if split is not None and not split.strip():
        raise UsageError("--split needs a name (train, test...)")
    with RecordWriter(output, overwrite=overwrite) as writer:  # an output in the way: first
        if voc is not None:
            records = read_voc(voc)
        elif class_folders:
            records = list_class_folders(inputs or [])
        else:
            records = list_image_records(inputs or [])
        if split is not None:
            records = [replace(r, split=split) for r in records]
        writer.write_all(records)  # all read: no half manifest on stdout or in a .partial
    if voc is None:
        what = f" of {len({r.label for r in records})} classes" if class_folders else ""
        log.info("%d images%s listed%s", writer.count, what, f" (split {split})" if split else "")
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
    (
        "ImageNet in class folders (val/ sorted into them) as one train/test labels file "
        "for vcl embed and vcl probe linear --split-field split:",
        "{ vcl images imagenet/train --class-folders --split train; "
        "vcl images imagenet/val --class-folders --split test; } > in1k.jsonl",
    ),
    ("Every jpg/png of two folders:", "vcl images photos/ more/ -o images.jsonl"),
]
