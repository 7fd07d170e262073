from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vcl.errors import DataError, MissingInputError, UsageError
from vcl.io.manifest import (
    RecordWriter,
    TrackRecord,
    VideoRecord,
    read_records,
    write_records,
)


def test_round_trip_keeps_fields_and_makes_paths_relative(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    videos = [
        VideoRecord(
            id="a",
            path=str(tmp_path / "clips" / "a.mp4"),
            label="run",
            split="train",
            fps=29.97,
            extra={"width": 17, "note": {"k": [1, 2]}},
        ),
        VideoRecord(id="b", path="/elsewhere/b.mp4"),
    ]
    out = tmp_path / "videos.jsonl"
    assert write_records(out, videos) == 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["schema"] == "vcl.video/1"
    assert lines[0]["path"] == "clips/a.mp4"  # relative to the manifest's folder
    assert lines[1]["path"] == "/elsewhere/b.mp4"  # outside it: stays absolute
    assert "label" not in lines[1]  # None fields are not written
    back = read_records(out, VideoRecord)
    assert back == videos  # paths resolved back to absolute, extra kept


def test_tracks_round_trip(tmp_path: Path) -> None:
    track = TrackRecord(
        id="t1",
        video_id="a",
        frames=[0, 2, 3],
        boxes=[[0, 0, 4, 5], [1.5, 0, 5, 5], [2, 1, 6, 6]],
        score=0.5,
        extra={"visible": [1.0, 0.5, 1.0]},
    )
    write_records(tmp_path / "t.jsonl", [track])
    assert read_records(tmp_path / "t.jsonl", TrackRecord) == [track]


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def good_line(i: int) -> str:
    return json.dumps({"schema": "vcl.video/1", "id": f"v{i}", "path": f"v{i}.mp4"})


def test_malformed_line_is_named(tmp_path: Path) -> None:
    lines = [good_line(i) for i in range(10)]
    lines[6] = '{"schema": "vcl.video/1", "id": "v6", "path": '
    with pytest.raises(DataError, match=r"line 7: not valid JSON \(Expecting value at column 47\)"):
        read_records(_write_lines(tmp_path / "m.jsonl", lines), VideoRecord)
    lines[6] = '{"id": "v6", "path": "a\tb"}'  # a raw tab inside a string
    with pytest.raises(DataError, match=r"\(Invalid control character at column 24\)"):
        read_records(_write_lines(tmp_path / "m.jsonl", lines), VideoRecord)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            '{"schema": "vcl.video/2", "id": "a", "path": "x"}',
            r"vcl\.video/2 is newer than the "
            r"vcl\.video/1",
        ),
        ('{"schema": "vcl.track/1", "id": "a", "path": "x"}', r"not a vcl\.video/1 record"),
        ('{"schema": "video-1", "id": "a", "path": "x"}', r"must look like"),
        ('{"schema": "vcl.video/1", "label": "x"}', r"missing field 'id'"),
        ('{"id": "a", "video_id": "b", "path": "x"}', r"'id' 'a' and 'video_id' 'b' differ"),
        ('{"id": "a", "path": "x", "fps": -3}', r"'fps' must be > 0"),
        ("[1, 2]", r"must be a JSON object"),
        ('{"id": "a", "path": 5}', r"'path' must be a non-empty string"),
    ],
)
def test_bad_records_are_refused(tmp_path: Path, line: str, problem: str) -> None:
    path = _write_lines(tmp_path / "m.jsonl", [good_line(0), line])
    with pytest.raises(DataError, match=rf"m\.jsonl: line 2: .*{problem}"):
        read_records(path, VideoRecord)


@pytest.mark.parametrize(
    "record",
    [
        {"id": "t", "video_id": "v", "frames": [0, 1], "boxes": [[0, 0, 1, 1]]},
        {"id": "t", "video_id": "v", "frames": [1, 1], "boxes": [[0, 0, 1, 1]] * 2},
        {"id": "t", "video_id": "v", "frames": [0], "boxes": [[3, 0, 1, 1]]},
        {"id": "t", "video_id": "v", "frames": [0], "boxes": [[0, 0, float("nan"), 1]]},
        {"id": "t", "video_id": "v", "frames": [0], "boxes": [[0, 0, 1]]},
    ],
)
def test_inconsistent_tracks_are_refused(tmp_path: Path, record: dict) -> None:
    path = _write_lines(tmp_path / "t.jsonl", [json.dumps(record)])
    with pytest.raises(DataError, match="line 1"):
        read_records(path, TrackRecord)


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "m.jsonl", [good_line(0), good_line(1), good_line(0)])
    with pytest.raises(DataError, match=r"line 3: duplicate id 'v0' \(first on line 1\)"):
        read_records(path, VideoRecord)


def test_lines_without_schema_are_read_as_the_expected_kind(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "labels.jsonl", ['{"id": "a", "path": "a.mp4", "x": 1}', ""])
    (record,) = read_records(path, VideoRecord)
    assert record.path == str(tmp_path / "a.mp4") and record.extra == {"x": 1}


def test_design_style_video_lines_are_read(tmp_path: Path, invoke) -> None:
    """DESIGN.md's videos manifest names the id ``video_id``; a line may also give only
    a ``path`` and get the id ``vcl videos`` gives that path. Written back as ``id``."""
    from tests.corpus import good_video
    from vcl.io.labels import read_id_field

    (tmp_path / "clips").mkdir()
    good_video(tmp_path / "clips" / "b.mp4")
    (tmp_path / "frames" / "c").mkdir(parents=True)
    lines = [
        '{"video_id": "a", "path": "clips/a.mp4", "label": "run", "split": "train"}',
        '{"path": "clips/b.mp4", "label": "walk"}',
        '{"path": "frames/c"}',
        '{"id": "d", "video_id": "d", "path": "/data/d.mp4"}',
    ]
    path = _write_lines(tmp_path / "m.jsonl", lines)
    records = read_records(path, VideoRecord)
    assert [(r.id, r.extra) for r in records] == [("a", {}), ("b", {}), ("c", {}), ("d", {})]
    assert records[0].path == str(tmp_path / "clips" / "a.mp4") and records[0].split == "train"
    out = tmp_path / "out.jsonl"
    write_records(out, records)
    written = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in written] == ["a", "b", "c", "d"]
    assert not any("video_id" in x for x in written)
    ids, labels = read_id_field(path, "label")  # a manifest as an evaluation label source
    assert list(ids) == ["a", "b", "c", "d"] and list(labels) == ["run", "walk", "", ""]
    listed = invoke("videos", _write_lines(tmp_path / "hand.jsonl", [lines[1]]))
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout)["id"] == "b"
    same_name = _write_lines(tmp_path / "twice.jsonl", ['{"path": "b.mp4"}', '{"path": "x/b.mp4"}'])
    with pytest.raises(DataError, match=r"line 2: duplicate id 'b'.*give the line an 'id'"):
        read_records(same_name, VideoRecord)


def test_path_only_lines_sharing_a_name_keep_their_extension(
    tmp_path: Path, invoke, caplog
) -> None:
    """Path-only lines x.mp4 and x.avi both took id 'x' (line 2: duplicate id), where
    `vcl videos x.mp4 x.avi` gives x.mp4 and x.avi. They now keep the extension, with
    the same warning, in the videos reader and in read_id_fields (the labels join) alike;
    other lines keep their ids, and one path on two lines is still a duplicate."""
    import logging

    from tests.corpus import good_video
    from vcl.io.labels import read_id_field

    for name in ("x.mp4", "x.avi", "y.mp4"):
        good_video(tmp_path / name)
    lines = [
        '{"path": "x.mp4", "label": "a"}',
        '{"path": "x.avi", "label": "b"}',
        '{"path": "y.mp4", "label": "c"}',
        '{"id": "x", "path": "y.mp4", "label": "d"}',
    ]
    path = _write_lines(tmp_path / "m.jsonl", lines)
    with caplog.at_level(logging.WARNING, logger="vcl"):
        records = read_records(path, VideoRecord)
    assert [r.id for r in records] == ["x.mp4", "x.avi", "y", "x"]
    assert caplog.text.count("ids keep the extension where two videos would share one") == 1
    assert "x.mp4, x.avi" in caplog.text
    ids, labels = read_id_field(path, "label")
    assert list(ids) == ["x.mp4", "x.avi", "y", "x"] and list(labels) == ["a", "b", "c", "d"]
    listed = invoke("videos", path, "-q")
    assert listed.exit_code == 0, listed.stderr
    assert [json.loads(x)["id"] for x in listed.stdout.splitlines()] == list(ids)
    piped = "".join(f'{{"path": "{tmp_path / n}"}}\n' for n in ("x.mp4", "x.avi"))
    listed = invoke("videos", "-", "-q", input=piped)  # stdin: read whole, then named
    assert listed.exit_code == 0, listed.stderr
    assert [json.loads(x)["id"] for x in listed.stdout.splitlines()] == ["x.mp4", "x.avi"]

    twice = _write_lines(tmp_path / "twice.jsonl", [lines[0], lines[1], lines[0]])
    with pytest.raises(DataError, match=r"line 3: duplicate id 'x' \(first on line 1\)"):
        read_records(twice, VideoRecord)
    with pytest.raises(DataError, match="duplicate id 'x'"):
        read_id_field(twice, "label")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError):
        read_records(tmp_path / "nope.jsonl", VideoRecord)
    with pytest.raises(DataError, match="is a folder"):
        read_records(tmp_path, VideoRecord)


def test_stdin_is_read_but_never_from_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(good_line(3) + "\n"))
    (record,) = read_records("-", VideoRecord)
    assert record.id == "v3" and Path(record.path).is_absolute()

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal(""))
    with pytest.raises(UsageError, match="interactive terminal"):
        read_records("-", VideoRecord)


def test_writer_leaves_nothing_when_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    with pytest.raises(RuntimeError), RecordWriter(out) as writer:
        writer.write(VideoRecord(id="a", path="a.mp4"))
        assert (tmp_path / "m.jsonl.partial").exists() and not out.exists()
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


coordinate = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)


@st.composite
def tracks(draw: st.DrawFn) -> TrackRecord:
    frames = sorted(draw(st.sets(st.integers(0, 10_000), min_size=1, max_size=20)))
    boxes = []
    for _ in frames:
        x0, x1 = sorted((draw(coordinate), draw(coordinate)))
        y0, y1 = sorted((draw(coordinate), draw(coordinate)))
        boxes.append([x0, y0, x1, y1])
    return TrackRecord(
        id=draw(st.text(min_size=1, max_size=12)),
        video_id=draw(st.text(min_size=1, max_size=12)),
        frames=frames,
        boxes=boxes,
        score=draw(coordinate),
        label=draw(st.none() | st.text(max_size=8)),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(tracks(), max_size=6, unique_by=lambda t: t.id))
def test_any_valid_tracks_round_trip(
    tmp_path_factory: pytest.TempPathFactory, records: list[TrackRecord]
) -> None:
    path = tmp_path_factory.mktemp("h") / "t.jsonl"
    write_records(path, records)
    assert read_records(path, TrackRecord) == records


def test_a_partial_file_is_refused_even_by_name(tmp_path: Path) -> None:
    partial = tmp_path / "m.jsonl.partial"
    partial.write_text(good_line(0) + "\n")
    with pytest.raises(DataError, match="incomplete"):
        read_records(partial, VideoRecord)
