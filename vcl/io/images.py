"""Images manifests (``vcl.image/1`` JSONL) from image files, folders or a VOC devkit.

``list_image_records`` names plain files and folders as ``vcl embed`` names them: a
folder's jpg/png files (not its subfolders), ids the names without extension.

``list_class_folders`` reads the class-folder layout of ImageNet's ``train/`` (and of
its ``val/`` once sorted into class folders), torchvision's ``ImageFolder`` convention:
``FOLDER/<class>/<image>``, label the class folder's name, id ``<class>/<name without
extension>`` (the image's path below FOLDER: names need only be unique within a class,
as they are not in every data set).

``read_voc`` reads a PASCAL VOC year folder (``VOCdevkit/VOC2007``): the images of
``JPEGImages`` and, from ``ImageSets/Main/<class>_<set>.txt``, each image's target for
each class, one ``<image id> <target>`` line (one or more spaces) per image:

====== ========================================================= ===================
target meaning (VOC devkit)                                      record field
====== ========================================================= ===================
 1     the class is in the image                                 ``label``
 0     only *difficult* instances of the class are in the image  ``difficult``
-1     the class is not in the image                             (neither)
====== ========================================================= ===================

Both fields hold class names joined by ``|`` (``ImageRecord``'s multi-label form;
``vcl probe svm --ignore-field difficult`` reads the second). The ``trainval`` set
becomes split ``train``, ``test`` split ``test`` (Goyal et al. 2019's VOC07 SVM
benchmark trains on trainval and tests on test); other sets (train, val) are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vcl.console import log
from vcl.errors import DataError, MissingInputError, UsageError, first_ids
from vcl.io.manifest import ImageRecord

VOC_SPLITS = {"trainval": "train", "test": "test"}  # ImageSets/Main set -> split
PRESENT, DIFFICULT, ABSENT = "1", "0", "-1"
SEPARATOR = "|"


def list_image_records(paths: Sequence[str | Path]) -> list[ImageRecord]:
    """One record per image file, or per jpg/png file of a folder; ids must be unique."""
    from vcl.io.video import IMAGE_EXTENSIONS, list_images

    records: list[ImageRecord] = []
    first: dict[str, Path] = {}
    for p in map(Path, paths):
        if not p.exists():
            raise MissingInputError("no such image or folder", p)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DataError("holds no jpg/png images", p)
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            found = [p]
        else:
            raise UsageError("is not an image file (jpg, png, bmp, tif, webp) or a folder", p)
        for f in found:
            if f.stem in first:
                raise DataError(f"id {f.stem!r} is also the id of {first[f.stem]}", f)
            first[f.stem] = f
            records.append(ImageRecord(id=f.stem, path=str(f.resolve())))
    return records


def list_class_folders(folders: Sequence[str | Path]) -> list[ImageRecord]:
    """One record per image of each folder's class subfolders: label the subfolder's
    name, id ``<class>/<stem>``; by folder, then class, then file name.

    Images directly in a folder (in no class) are left out with a warning, as are
    hidden subfolders; an empty class subfolder is a warning, a folder with no class
    subfolder a DataError (it is likely a plain image folder). Images of deeper
    subfolders are not listed (ImageNet's class folders hold none).
    """
    from vcl.io.video import is_hidden, list_images

    records: list[ImageRecord] = []
    first: dict[str, Path] = {}
    for folder in map(Path, folders):
        if not folder.exists():
            raise MissingInputError("no such folder", folder)
        if not folder.is_dir():
            raise UsageError("is not a folder (--class-folders takes folders of classes)", folder)
        classes = sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))
        if not classes:
            raise DataError(
                "no class subfolders (--class-folders expects FOLDER/<class>/<image>)", folder
            )
        stray = list_images(folder)
        if stray:
            log.warning(
                "%s: %d images are in no class subfolder, left out (first: %s)",
                folder,
                len(stray),
                first_ids([p.name for p in stray]),
            )
        empty = []
        for cls in classes:
            if SEPARATOR in cls.name:  # would read as several labels (ImageRecord's 'a|b')
                raise DataError(f"a class name holds {SEPARATOR!r}, vcl's label separator", cls)
            found = list_images(cls)
            if not found:
                empty.append(cls.name)
            where = cls.resolve()  # once a class, not once an image (ImageNet: 1.28M)
            for f in found:
                image = f"{cls.name}/{f.stem}"
                if image in first:
                    raise DataError(f"id {image!r} is also the id of {first[image]}", f)
                first[image] = f
                records.append(ImageRecord(id=image, path=str(where / f.name), label=cls.name))
        if len(empty) == len(classes):
            raise DataError("its class subfolders hold no jpg/png images", folder)
        if empty:
            log.warning(
                "%s: %d class subfolders hold no images (first: %s)",
                folder,
                len(empty),
                first_ids(empty),
            )
    return records


def read_class_file(path: Path) -> dict[str, str]:
    """``{image id: target}`` of one ``<class>_<set>.txt``, in file order."""
    targets: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", path) from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in (PRESENT, DIFFICULT, ABSENT):
            raise DataError(
                f"line {lineno}: expected '<image id> <1|0|-1>', got {line.strip()!r}", path
            )
        if parts[0] in targets:
            raise DataError(f"line {lineno}: image {parts[0]!r} is listed twice", path)
        targets[parts[0]] = parts[1]
    return targets


def _class_files(main: Path) -> dict[str, dict[str, Path]]:
    """``{set: {class: file}}`` of the sets of VOC_SPLITS found in ImageSets/Main."""
    found: dict[str, dict[str, Path]] = {}
    for f in sorted(main.glob("*_*.txt")):
        cls, _, image_set = f.stem.rpartition("_")
        if image_set in VOC_SPLITS and cls:
            found.setdefault(image_set, {})[cls] = f
    if not found:
        raise DataError(
            "holds no <class>_trainval.txt or <class>_test.txt files",
            main,
            "give a VOC year folder (VOCdevkit/VOC2007) with its ImageSets",
        )
    sets = list(found)
    for s in sets[1:]:
        missing = sorted(set(found[sets[0]]) ^ set(found[s]))
        if missing:
            cls = missing[0]
            where = s if cls in found[sets[0]] else sets[0]
            raise DataError(
                f"has no {cls}_{where}.txt, though {cls} has a file of the other set", main
            )
    return found


def read_voc(folder: str | Path) -> list[ImageRecord]:
    """One record per image of the trainval and test sets found, sorted by id: path,
    ``label`` (present classes), ``difficult`` (in ``extra``) and ``split``.

    Every class file of a set must list the same images, each with a file in
    JPEGImages (else DataError naming a file); images of JPEGImages that no class file
    lists are left out with a warning.
    """
    from vcl.io.video import list_images

    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError("no such VOC folder", folder)
    main = folder / "ImageSets" / "Main"
    jpegs = folder / "JPEGImages"
    for needed in (main, jpegs):
        if not needed.is_dir():
            raise MissingInputError(
                f"no {needed.relative_to(folder).as_posix()} folder",
                folder,
                "give a VOC year folder (VOCdevkit/VOC2007), which holds JPEGImages and "
                "ImageSets/Main",
            )
    by_set = _class_files(main)
    classes = sorted(next(iter(by_set.values())))
    split_of: dict[str, str] = {}
    present: dict[str, list[str]] = {}
    difficult: dict[str, list[str]] = {}
    for image_set, files in by_set.items():
        listed: list[str] | None = None
        reference = files[classes[0]]
        for cls in classes:
            targets = read_class_file(files[cls])
            if listed is None:
                listed = list(targets)
            elif set(targets) != set(listed):
                extra = sorted(set(targets) ^ set(listed))
                raise DataError(
                    f"lists {len(targets)} images, {reference.name} {len(listed)}: they differ "
                    f"by {len(extra)} (first: {first_ids(extra)})",
                    files[cls],
                    "every class file of a set lists every image of the set",
                )
            for image, target in targets.items():
                if target == PRESENT:
                    present.setdefault(image, []).append(cls)
                elif target == DIFFICULT:
                    difficult.setdefault(image, []).append(cls)
        assert listed is not None
        for image in listed:
            if image in split_of:
                raise DataError(
                    f"image {image!r} is in both the {image_set} set and another one",
                    reference,
                    "VOC sets do not overlap",
                )
            split_of[image] = VOC_SPLITS[image_set]
    files_of: dict[str, list[Path]] = {}
    for f in list_images(jpegs):
        files_of.setdefault(f.stem, []).append(f)
    no_file = sorted(i for i in split_of if i not in files_of)
    if no_file:
        sets = sorted({split_of[i] for i in no_file})
        raise DataError(
            f"{len(no_file)} images of ImageSets/Main ({' and '.join(sets)} split) have no "
            f"file here (first: {first_ids(no_file)})",
            jpegs,
            "extract every VOC tar of the year (trainval and test) into one VOCdevkit",
        )
    twice = sorted(i for i in split_of if len(files_of[i]) > 1)
    if twice:
        raise DataError(
            f"image {twice[0]!r} has {len(files_of[twice[0]])} files "
            f"({', '.join(f.name for f in files_of[twice[0]])})",
            jpegs,
            "keep one file per image",
        )
    unlisted = sorted(set(files_of) - set(split_of))
    if unlisted:
        log.warning(
            "%s: %d images are in no %s class file of ImageSets/Main, left out (first: %s)",
            jpegs,
            len(unlisted),
            " or ".join(s for s in VOC_SPLITS if s in by_set),
            first_ids(unlisted),
        )
    records = []
    for image in sorted(split_of):
        extra = {"difficult": SEPARATOR.join(difficult[image])} if image in difficult else {}
        label = SEPARATOR.join(present[image]) if image in present else None
        path = str(files_of[image][0].resolve())
        records.append(
            ImageRecord(id=image, path=path, label=label, split=split_of[image], extra=extra)
        )
    return records
