"""Ground-truth tracks as a tracks JSONL: ODCT's ground-truth-track control (Table III).

Two sources:

- `vcl synth`'s ``gt_tracks.jsonl`` (``vcl.track/1`` records with per-frame boxes);
- ImageNet VID annotations: one PASCAL-VOC-style XML per frame, in one folder per video
  (``Annotations/VID/train/<video>/000000.xml``), each ``<object>`` with a ``<trackid>``,
  a ``<name>`` (WordNet synset) and a ``<bndbox>`` (xmin, ymin, xmax, ymax). The frame
  index is the number in the file name (its position in name order when not a number);
  boxes (``[xmin, ymin, xmax, ymax]``) reaching past the frame's ``<size>`` are clipped
  to it (a warning counts them) and a box wholly outside it is an error, so a bad
  annotation is caught here rather than at `vcl crops`. Video ids are the folders'
  paths relative to the deepest folder common to all of them — the same rule
  `vcl.io.sources.resolve_videos` applies to the matching ``Data/VID`` frame folders.

The class is dropped unless ``keep_class``, so the tracks are class-agnostic like the
ones `iou` makes.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from vcl.console import log
from vcl.errors import DataError, MissingInputError
from vcl.io.manifest import TrackRecord, read_records


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def from_synth(path: str | Path, keep_class: bool = False) -> list[TrackRecord]:
    """Tracks of a ``vcl.track/1`` JSONL (e.g. ``vcl synth``'s gt_tracks.jsonl)."""
    out = []
    for rec in read_records(path, TrackRecord):
        if not rec.frames:
            raise DataError(f"track {rec.id!r} has no boxes", path)
        extra = {"method": "gt"}
        for key in ("visible", "kind"):
            if key in rec.extra:
                extra[key] = rec.extra[key]
        out.append(
            TrackRecord(
                id=rec.id,
                video_id=rec.video_id,
                frames=list(rec.frames),
                boxes=[list(map(float, b)) for b in rec.boxes],
                score=1.0,
                label=rec.label if keep_class else None,
                extra=extra,
            )
        )
    return out


def _text(node, tag: str, xml: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DataError(f"an <object> has no <{tag}>", xml)
    return child.text.strip()


def _frame_size(root, xml: Path) -> tuple[float, float] | None:
    """``(width, height)`` from the XML's ``<size>``; None when it has none."""
    size = root.find("size")
    if size is None or size.find("width") is None or size.find("height") is None:
        return None
    try:
        width, height = (float(size.find(k).text or "") for k in ("width", "height"))
    except ValueError:
        raise DataError("<size> is not a number", xml) from None
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise DataError(f"<size> {width:g}x{height:g} is not a frame size", xml)
    return width, height


def _clip_to_frame(box: list[float], size: tuple[float, float] | None, xml: Path) -> bool:
    """Clip ``box`` in place to the frame; True when it had to be. Outside it: an error."""
    if size is None:
        return False
    width, height = size
    x0, y0, x1, y1 = box
    if x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0:
        raise DataError(f"box {box} lies outside the {width:g}x{height:g} frame", xml)
    clipped = [max(x0, 0.0), max(y0, 0.0), min(x1, width), min(y1, height)]
    if clipped == box:
        return False
    box[:] = clipped
    return True


def _parse_frame(xml: Path) -> tuple[list[tuple[str, str, list[float]]], int]:
    """``(trackid, name, box)`` of every object annotated in one frame's XML, and how
    many boxes reached past the frame's ``<size>`` and were clipped to it."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        raise DataError(f"not valid XML ({exc})", xml) from None
    size = _frame_size(root, xml)
    objects, clipped = [], 0
    for obj in root.iter("object"):
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DataError("an <object> has no <bndbox>", xml)
        try:
            box = [float(_text(bnd, k, xml)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            raise DataError("a <bndbox> coordinate is not a number", xml) from None
        if not all(map(math.isfinite, box)):
            raise DataError(f"box {box} is not finite", xml)
        if box[2] < box[0] or box[3] < box[1]:
            raise DataError(f"box {box} has xmax < xmin or ymax < ymin", xml)
        clipped += _clip_to_frame(box, size, xml)
        objects.append((_text(obj, "trackid", xml), _text(obj, "name", xml), box))
    return objects, clipped


def _annotation_folders(root: Path) -> list[Path]:
    found = []
    for here, dirs, files in os.walk(root):
        dirs.sort()
        if any(f.lower().endswith(".xml") for f in files):
            found.append(Path(here))
    return found


def from_vid(root: str | Path, keep_class: bool = False) -> list[TrackRecord]:
    """Tracks from an ImageNet VID annotation folder (one sub-folder of XMLs per video)."""
    root = Path(root)
    if not root.exists():
        raise MissingInputError("no such annotation folder", root)
    folders = _annotation_folders(root)
    if not folders:
        raise DataError("holds no .xml annotation files", root, "point at Annotations/VID/...")
    if len(folders) == 1:
        ids = [folders[0].name]
    else:
        common = Path(os.path.commonpath([str(f.parent) for f in folders]))
        ids = [f.relative_to(common).as_posix() for f in folders]
    out: list[TrackRecord] = []
    clipped = 0
    late_start: list[Path] = []  # first annotation numbered past 0: 1-based (ffmpeg) names?
    for video_id, folder in zip(ids, folders, strict=True):
        xmls = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() == ".xml"),
            key=lambda p: _natural_key(p.name),
        )
        tracks: dict[str, tuple[str, list[int], list[list[float]]]] = {}
        if xmls and xmls[0].stem.isdigit() and int(xmls[0].stem) > 0:
            late_start.append(xmls[0])
        for position, xml in enumerate(xmls):
            frame = int(xml.stem) if xml.stem.isdigit() else position
            objects, n_clipped = _parse_frame(xml)
            clipped += n_clipped
            for trackid, name, box in objects:
                entry = tracks.setdefault(trackid, (name, [], []))
                if entry[1] and frame <= entry[1][-1]:
                    raise DataError(f"track {trackid} appears twice in frame {frame}", xml)
                entry[1].append(frame)
                entry[2].append(box)
        for trackid in sorted(tracks, key=_natural_key):
            name, frames, boxes = tracks[trackid]
            out.append(
                TrackRecord(
                    id=f"{video_id}/{trackid}",
                    video_id=video_id,
                    frames=frames,
                    boxes=boxes,
                    score=1.0,
                    label=name if keep_class else None,
                    extra={"method": "gt"},
                )
            )
    if late_start:
        log.warning(
            "%d videos' annotations start past frame 0 (first: %s); frame indices are the "
            "file numbers, while a frame folder's frames count from 0 by position: if its "
            "images are numbered from 1 too, every box lands one frame late",
            len(late_start),
            late_start[0],
        )
    if clipped:
        log.warning(
            "%s: %d boxes reached past their frame's <size> and were clipped to it", root, clipped
        )
    return out


def import_tracks(source: str | Path, keep_class: bool = False) -> list[TrackRecord]:
    """Ground-truth tracks from a tracks JSONL file or an ImageNet VID annotation folder."""
    path = Path(source)
    if str(source) != "-" and not path.exists():
        raise MissingInputError("no such ground-truth file or annotation folder", path)
    if path.is_dir():
        return from_vid(path, keep_class)
    return from_synth(source, keep_class)
