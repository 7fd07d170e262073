"""vcl videos --ucf101 / --hmdb51 / --kinetics: official split lists read into fields.

Every layout here is a tiny fake of the real one, written by hand with the real files'
quirks (CRLF endings, trailing blanks, UCF101's HandstandPushups / HandStandPushups,
HMDB51 class names with underscores and 0 entries, YouTube ids with '_' and '-'), and
every video is one tiny clip copied under the listed names.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import jsonl, moving_square_frames
from tests.test_cli import one_error_line
from vcl.errors import DataError, ExitCode, MissingInputError
from vcl.io.datasets import (
    kinetics_key,
    match_videos,
    read_hmdb51,
    read_kinetics,
    read_ucf101,
    video_key,
)
from vcl.io.video import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, moving_square_frames(3, width=17, height=11), fps=5)
    return path


def place(clip: Path, root: Path, *names: str) -> None:
    """The clip copied to each ``root/name`` (a name ending in '/' is a frame folder)."""
    import cv2

    for name in names:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            target.mkdir()
            for i, rgb in enumerate(moving_square_frames(2, width=17, height=11), start=1):
                cv2.imwrite(str(target / f"{i:05d}.jpg"), rgb[..., ::-1])
        else:
            shutil.copy(clip, target)


def write(path: Path, text: str) -> Path:
    """``text`` written byte for byte (no newline translation: CRLF stays CRLF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def by_name(stdout: str) -> dict[str, dict]:
    """Manifest lines by the video's name without extension, schema/probe fields dropped."""
    probed = {"schema", "id", "path", "fps", "kind", "width", "height", "frames"}
    probed |= {"frames_counted", "codec"}
    return {
        video_key(r["path"]): {k: v for k, v in r.items() if k not in probed} for r in jsonl(stdout)
    }


# --- UCF101 ---------------------------------------------------------------------------

UCF_CLASSES = "1 ApplyEyeMakeup\r\n2 HandstandPushups  \r\n3 Archery\r\n\r\n"
UCF_TRAIN1 = (
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
    "HandstandPushups/v_HandStandPushups_g08_c01.avi 2 \r\n"
)
UCF_TEST1 = (
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
    "HandstandPushups/v_HandStandPushups_g01_c01.avi  \r\n"
    "Archery/v_Archery_g01_c01.avi\r\n"  # listed, never downloaded
)
# split 2 swaps the groups; its test list writes the folder in the files' case
UCF_TRAIN2 = (
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n"
    "HandstandPushups/v_HandStandPushups_g01_c01.avi 2\n"
    "Archery/v_Archery_g01_c01.avi 3\n"
)
UCF_TEST2 = (
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\nHandStandPushups/v_HandStandPushups_g08_c01.avi\n"
)
UCF_EXPECTED = {
    "v_ApplyEyeMakeup_g08_c01": {"label": "ApplyEyeMakeup", "split1": "train", "split2": "test"},
    "v_HandStandPushups_g08_c01": {
        "label": "HandstandPushups",
        "split1": "train",
        "split2": "test",
    },
    "v_ApplyEyeMakeup_g01_c01": {"label": "ApplyEyeMakeup", "split1": "test", "split2": "train"},
    "v_HandStandPushups_g01_c01": {
        "label": "HandstandPushups",
        "split1": "test",
        "split2": "train",
    },
    "v_Archery_g01_c01": {"label": "Archery", "split1": "test", "split2": "train"},
}


def ucf_lists(root: Path) -> Path:
    lists = root / "ucfTrainTestlist"
    write(lists / "classInd.txt", UCF_CLASSES)
    write(lists / "trainlist01.txt", UCF_TRAIN1)
    write(lists / "testlist01.txt", UCF_TEST1)
    write(lists / "trainlist02.txt", UCF_TRAIN2)
    write(lists / "testlist02.txt", UCF_TEST2)
    return lists


@pytest.fixture
def ucf(tmp_path: Path, clip: Path) -> tuple[Path, Path]:
    """UCF-101/ with one video transcoded to .mp4, one extracted to frames, one not in
    any list; Archery's listed video is missing."""
    videos = tmp_path / "UCF-101"
    place(
        clip,
        videos,
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mp4",
        "HandstandPushups/v_HandStandPushups_g08_c01.avi",
        "HandstandPushups/v_HandStandPushups_g01_c01/",
        "Extra/v_Extra_g01_c01.avi",
    )
    return videos, ucf_lists(tmp_path)


def test_read_ucf101_gives_every_listed_video_its_class_and_splits(tmp_path: Path) -> None:
    assert read_ucf101(ucf_lists(tmp_path)) == UCF_EXPECTED


def test_videos_ucf101_labels_files_transcodes_and_frame_folders(invoke, ucf) -> None:
    videos, lists = ucf
    result = invoke("videos", videos, "--ucf101", lists)
    assert result.exit_code == 0, result.stderr
    got = by_name(result.stdout)
    expected = {k: v for k, v in UCF_EXPECTED.items() if k != "v_Archery_g01_c01"}
    assert got == {**expected, "v_Extra_g01_c01": {}}
    warnings = [x for x in result.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 2, result.stderr
    assert "1 of 5 videos are in no list" in warnings[0] and "'v_Extra_g01_c01'" in warnings[0]
    assert "1 of 5 list entries" in warnings[1] and "'v_Archery_g01_c01'" in warnings[1]


def test_ucf101_errors_name_the_file_and_line_and_write_nothing(invoke, ucf) -> None:
    videos, lists = ucf
    out = videos.parent / "ucf101.jsonl"

    def fails(code: int = ExitCode.DATA) -> str:
        result = invoke("videos", videos, "--ucf101", lists, "-o", out)
        assert result.exit_code == code, result.stderr
        assert not out.exists() and not Path(f"{out}.partial").exists()
        return one_error_line(result.stderr)

    # a train line without its class number, on line 3 (after a CRLF line 2)
    write(lists / "trainlist01.txt", UCF_TRAIN1 + "Archery/v_Archery_g02_c01.avi\r\n")
    assert f"{lists / 'trainlist01.txt'}: line 3: expected '<class>/<video>.avi <class" in fails()
    write(lists / "trainlist01.txt", UCF_TRAIN1)
    write(lists / "testlist01.txt", UCF_TEST1 + "Fencing/v_Fencing_g01_c01.avi\n")
    line = fails()
    assert f"{lists / 'testlist01.txt'}: line 4: expected" in line and "classInd" in line
    write(lists / "testlist01.txt", UCF_TEST1)
    # a split with its train list only
    write(lists / "trainlist03.txt", UCF_TRAIN1)
    assert fails() == f"error: {lists}: has trainlist03.txt but no testlist03.txt"
    (lists / "trainlist03.txt").unlink()
    # a video in the train and the test set of one split
    write(lists / "testlist02.txt", UCF_TEST2 + "Archery/v_Archery_g01_c01.avi\n")
    line = fails()
    assert f"{lists / 'testlist02.txt'}: line 3: v_Archery_g01_c01 has split2 'test'" in line
    assert f"'train' at {lists / 'trainlist02.txt'}: line 3" in line
    write(lists / "testlist02.txt", UCF_TEST2)
    # a listed video twice on disk: transcoded beside its original
    shutil.copy(videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mp4", videos / "x.avi")
    (videos / "x.avi").rename(videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi")
    line = fails()
    assert "two videos are v_ApplyEyeMakeup_g01_c01" in line
    assert str(videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi") in line
    assert str(videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mp4") in line
    (videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi").unlink()
    assert invoke("videos", videos, "--ucf101", lists, "-o", out).exit_code == 0  # all undone


def test_ucf101_missing_and_empty_lists(invoke, tmp_path: Path, clip: Path) -> None:
    place(clip, tmp_path / "v", "a.avi")
    missing = invoke("videos", tmp_path / "v", "--ucf101", tmp_path / "nope")
    assert missing.exit_code == ExitCode.NO_INPUT
    assert one_error_line(missing.stderr).startswith(f"error: {tmp_path / 'nope'}: no such folder")
    (tmp_path / "empty").mkdir()
    empty = invoke("videos", tmp_path / "v", "--ucf101", tmp_path / "empty")
    assert empty.exit_code == ExitCode.DATA and "holds no classInd.txt" in empty.stderr
    write(tmp_path / "empty/classInd.txt", "1 A\n")
    nolists = invoke("videos", tmp_path / "v", "--ucf101", tmp_path / "empty")
    assert nolists.exit_code == ExitCode.DATA
    assert "no trainlist0K.txt / testlist0K.txt pair" in one_error_line(nolists.stderr)
    write(tmp_path / "empty/classInd.txt", "\r\n")
    assert (
        "lists no classes"
        in invoke("videos", tmp_path / "v", "--ucf101", tmp_path / "empty").stderr
    )


def test_manifest_input_keeps_its_fields_but_label_and_splits(invoke, ucf) -> None:
    """A manifest's own label and split fields (split, splitK) give way to the lists'
    (the unlisted video loses them too, and so do splits the lists do not define: no mix
    of old and new); its other fields stay."""
    videos, lists = ucf
    manifest = videos.parent / "old.jsonl"
    lines = [
        {"id": "a", "path": "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
         "label": "old", "split1": "test", "split3": "train", "split": "x", "note": 1},
        {"id": "b", "path": "UCF-101/Extra/v_Extra_g01_c01.avi", "label": "old",
         "split2": "train", "note": 2},
    ]  # fmt: skip
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = invoke("videos", manifest, "--ucf101", lists)
    assert result.exit_code == 0, result.stderr
    got = by_name(result.stdout)
    assert got == {
        "v_ApplyEyeMakeup_g08_c01": {
            **UCF_EXPECTED["v_ApplyEyeMakeup_g08_c01"],
            "note": 1,
        },
        "v_Extra_g01_c01": {"note": 2},
    }
    assert [r["id"] for r in jsonl(result.stdout)] == ["a", "b"]


def test_lists_that_match_no_video_are_an_error(invoke, ucf, tmp_path: Path) -> None:
    """The wrong data set's lists would strip every label and split: refused, unwritten."""
    videos, _ = ucf
    lists = write(tmp_path / "hmdb/brush_hair_test_split1.txt", "April_09_x.avi 1\n").parent
    out = tmp_path / "out.jsonl"
    result = invoke("videos", videos, "--hmdb51", lists, "-o", out)
    assert result.exit_code == ExitCode.DATA, result.stderr
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {lists}: no video of the ") and "in its lists" in line
    assert not out.exists()


# --- HMDB51 ---------------------------------------------------------------------------

HMDB_LISTS = {
    "brush_hair_test_split1.txt": "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \r\n"
    "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 2 \r\n"
    "Dr._Hair_brush_hair_h_cm_np1_fr_goo_0.avi 0 \r\n",
    "brush_hair_test_split2.txt": "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2\n"
    "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 0\n"
    "Dr._Hair_brush_hair_h_cm_np1_fr_goo_0.avi 1\n",
    "ride_bike_test_split1.txt": "Bike_ride_ride_bike_f_cm_np1_ba_med_0.avi 1\n"
    "Fast_bike_ride_bike_f_cm_np1_fr_med_1.avi 0\n"
    "Lone_rider_ride_bike_f_cm_np1_le_bad_2.avi 2\n",
    "ride_bike_test_split2.txt": "Bike_ride_ride_bike_f_cm_np1_ba_med_0.avi 2\n"
    "Fast_bike_ride_bike_f_cm_np1_fr_med_1.avi 1\n"
    "Lone_rider_ride_bike_f_cm_np1_le_bad_2.avi 0\n",
}
HMDB_EXPECTED = {
    "April_09_brush_hair_u_nm_np1_ba_goo_0": ("brush_hair", "train", "test"),
    "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0": ("brush_hair", "test", "unused"),
    "Dr._Hair_brush_hair_h_cm_np1_fr_goo_0": ("brush_hair", "unused", "train"),
    "Bike_ride_ride_bike_f_cm_np1_ba_med_0": ("ride_bike", "train", "test"),
    "Fast_bike_ride_bike_f_cm_np1_fr_med_1": ("ride_bike", "unused", "train"),
    "Lone_rider_ride_bike_f_cm_np1_le_bad_2": ("ride_bike", "test", "unused"),
}


def hmdb_lists(root: Path) -> Path:
    lists = root / "testTrainMulti_7030_splits"
    for name, text in HMDB_LISTS.items():
        write(lists / name, text)
    return lists


@pytest.fixture
def hmdb(tmp_path: Path, clip: Path) -> tuple[Path, Path]:
    """hmdb51/ with every listed video but Lone_rider, as .avi under class folders."""
    videos = tmp_path / "hmdb51"
    names = [k for k in HMDB_EXPECTED if not k.startswith("Lone")]
    place(clip, videos, *(f"{HMDB_EXPECTED[n][0]}/{n}.avi" for n in names))
    return videos, hmdb_lists(tmp_path)


def test_read_hmdb51_labels_classes_with_underscores_and_unused(tmp_path: Path) -> None:
    expected = {k: {"label": c, "split1": a, "split2": b} for k, (c, a, b) in HMDB_EXPECTED.items()}
    assert read_hmdb51(hmdb_lists(tmp_path)) == expected


def test_videos_hmdb51_and_its_errors(invoke, hmdb) -> None:
    videos, lists = hmdb
    result = invoke("videos", videos, "--hmdb51", lists)
    assert result.exit_code == 0, result.stderr
    assert by_name(result.stdout) == {
        k: {"label": c, "split1": a, "split2": b}
        for k, (c, a, b) in HMDB_EXPECTED.items()
        if not k.startswith("Lone")
    }
    assert "1 of 6 list entries" in result.stderr and "'Lone_rider_ride_bike" in result.stderr
    assert "in no list" not in result.stderr

    out = videos.parent / "hmdb51.jsonl"
    bad = lists / "ride_bike_test_split2.txt"
    write(bad, HMDB_LISTS[bad.name] + "Extra_ride_bike_0.avi 3\n")
    result = invoke("videos", videos, "--hmdb51", lists, "-o", out)
    assert result.exit_code == ExitCode.DATA and not out.exists()
    assert one_error_line(result.stderr).startswith(
        f"error: {bad}: line 4: expected '<video>.avi <0|1|2>'"
    )
    bad.unlink()  # ride_bike without its split 2 list, which brush_hair has
    result = invoke("videos", videos, "--hmdb51", lists, "-o", out)
    assert result.exit_code == ExitCode.DATA and not out.exists()
    assert "class 'ride_bike' has no ride_bike_test_split2.txt" in one_error_line(result.stderr)
    for name in HMDB_LISTS:
        (lists / name).unlink(missing_ok=True)
    result = invoke("videos", videos, "--hmdb51", lists)
    assert result.exit_code == ExitCode.DATA
    assert "holds no <class>_test_split<K>.txt files" in one_error_line(result.stderr)
    single = invoke("videos", videos, "--hmdb51", lists, "--ucf101", lists)
    assert single.exit_code == ExitCode.USAGE and "give one data set" in single.stderr


def test_probe_and_retrieve_leave_out_unused_rows(invoke, hmdb, tmp_path: Path, clip: Path) -> None:
    """HMDB51's third split value: rows that are neither train nor test are in no set.
    The unused rows are planted on the test rows of the other class, so counting them
    as train (or gallery) would get every test row wrong at k = 1."""
    from vcl.io.features import FeatureSet, write_feature_set

    videos, lists = hmdb
    place(clip, videos, "ride_bike/Lone_rider_ride_bike_f_cm_np1_le_bad_2.avi")
    manifest = tmp_path / "hmdb51.jsonl"
    assert invoke("videos", videos, "--hmdb51", lists, "-o", manifest).exit_code == 0
    rows = jsonl(manifest.read_text())
    ids = [r["id"] for r in rows]
    at = {
        ("brush_hair", "train"): [1.0, 0.0],
        ("brush_hair", "test"): [1.0, 0.1],
        ("ride_bike", "train"): [0.0, 1.0],
        ("ride_bike", "test"): [0.1, 1.0],
        ("brush_hair", "unused"): [0.1, 1.0],  # on ride_bike's test row
        ("ride_bike", "unused"): [1.0, 0.1],  # on brush_hair's test row
    }
    x = np.array([at[r["label"], r["split1"]] for r in rows], np.float32)
    store = write_feature_set(tmp_path / "f.zarr", FeatureSet(ids=np.array(ids), features=x), {})
    common = ["--split-field", "split1", "--labels", manifest]
    probe = invoke("probe", "knn", "--train", store, *common, "--k", "1")
    assert probe.exit_code == 0, probe.stderr
    layer = json.loads(probe.stdout)["layers"][0]
    assert (layer["train_samples"], layer["test_samples"]) == (2, 2)
    assert layer["metrics"]["top1"] == 1.0
    common += ["--query-split", "test", "--gallery-split", "train"]
    retrieve = invoke("retrieve", "eval", "--query", store, *common, "-k", "1")
    assert retrieve.exit_code == 0, retrieve.stderr
    report = json.loads(retrieve.stdout)
    assert (report["queries"], report["gallery_size"]) == (2, 2)
    assert report["recall"]["R@1"] == 1.0


# --- Kinetics -------------------------------------------------------------------------

K_TRAIN = (
    "label,youtube_id,time_start,time_end,split,is_cc\r\n"
    "abseiling,-3B32lodo2M,59,69,train,0\r\n"
    '"tying knot (not on a tie)",a_b-c_d-e_f,10,20,train,1\r\n'
    "abseiling,zzzzzzzzzzz,0,10,train,0\r\n"  # never downloaded
)
K_VALIDATE = "label,youtube_id,time_start,time_end\n air drumming ,--0a1b2c3d4,0,10\n"
K_TEST = "youtube_id,time_start,time_end,split\nx_-_x_-_x_-,5,15,test\n"
K_VALIDATE_COLUMN = "label,youtube_id,time_start,time_end,split\nyoga,yyyyyyyyyyy,3,13,validate\n"
K_EXPECTED = {
    "-3B32lodo2M_000059": {"label": "abseiling", "split": "train"},
    "a_b-c_d-e_f_000010": {"label": "tying knot (not on a tie)", "split": "train"},
    "zzzzzzzzzzz_000000": {"label": "abseiling", "split": "train"},
    "--0a1b2c3d4_000000": {"label": "air drumming", "split": "val"},
    "x_-_x_-_x_-_000005": {"split": "test"},
}


def kinetics_csvs(root: Path) -> list[Path]:
    return [
        write(root / "kinetics400/train.csv", K_TRAIN),
        write(root / "kinetics400/validate.csv", K_VALIDATE),
        write(root / "kinetics400/test.csv", K_TEST),
    ]


def test_read_kinetics_labels_and_splits(tmp_path: Path) -> None:
    assert read_kinetics(kinetics_csvs(tmp_path)) == K_EXPECTED
    column = write(tmp_path / "k700/kinetics_700_val.csv", K_VALIDATE_COLUMN)
    assert read_kinetics([column]) == {"yyyyyyyyyyy_000003": {"label": "yoga", "split": "val"}}
    assert kinetics_key("x_-_x_-_x_-", 5) == "x_-_x_-_x_-_000005"


def test_videos_kinetics_matches_downloader_names_and_bare_ids(
    invoke, tmp_path: Path, clip: Path
) -> None:
    videos = tmp_path / "k400"
    place(
        clip,
        videos,
        "train/abseiling/-3B32lodo2M_000059_000069.mp4",
        "train/tying knot (not on a tie)/a_b-c_d-e_f_000010_000020.mp4",
        "val/--0a1b2c3d4.mp4",  # a bare id
        "test/x_-_x_-_x_-_000005_000016.mp4",  # another end: matched on the start
        "test/x_-_x_-_x_-_000030_000040.mp4",  # another clip of a listed id: unlisted
    )
    csvs = kinetics_csvs(tmp_path)
    result = invoke("videos", videos, *(a for p in csvs for a in ("--kinetics", p)))
    assert result.exit_code == 0, result.stderr
    assert by_name(result.stdout) == {
        "-3B32lodo2M_000059_000069": {"label": "abseiling", "split": "train"},
        "a_b-c_d-e_f_000010_000020": {"label": "tying knot (not on a tie)", "split": "train"},
        "--0a1b2c3d4": {"label": "air drumming", "split": "val"},
        "x_-_x_-_x_-_000005_000016": {"split": "test"},
        "x_-_x_-_x_-_000030_000040": {},
    }
    assert "1 of 5 videos are in no list" in result.stderr
    assert "'x_-_x_-_x_-_000030_000040'" in result.stderr
    assert "1 of 5 list entries" in result.stderr and "'zzzzzzzzzzz_000000'" in result.stderr

    out = tmp_path / "k.jsonl"
    write(csvs[0], K_TRAIN + "abseiling,yyyyyyyyyyy,fifty,60,train,0\n")
    bad = invoke("videos", videos, "--kinetics", csvs[0], "-o", out)
    assert bad.exit_code == ExitCode.DATA and not out.exists()
    assert one_error_line(bad.stderr).startswith(
        f"error: {csvs[0]}: line 5: expected a youtube_id and whole seconds"
    )


def test_kinetics_csv_errors(tmp_path: Path) -> None:
    other = write(
        tmp_path / "extra.csv", "label,youtube_id,time_start,time_end\na,bbbbbbbbbbb,0,10\n"
    )
    with pytest.raises(DataError, match="no split column and its name is not train"):
        read_kinetics([other])
    renamed = write(tmp_path / "kinetics_700_validate.csv", other.read_text())
    assert read_kinetics([renamed]) == {"bbbbbbbbbbb_000000": {"label": "a", "split": "val"}}
    headless = write(tmp_path / "train.csv", "a,bbbbbbbbbbb,0,10,train\n")
    with pytest.raises(DataError, match="line 1: expected a header with youtube_id"):
        read_kinetics([headless])
    short = write(tmp_path / "val.csv", "youtube_id,time_start,time_end\nbbbbbbbbbbb,0\n")
    with pytest.raises(DataError, match="line 2: expected 3 comma-separated fields"):
        read_kinetics([short])
    with pytest.raises(DataError, match="is empty"):
        read_kinetics([write(tmp_path / "test.csv", "\r\n")])
    with pytest.raises(MissingInputError):
        read_kinetics([tmp_path / "absent.csv"])
    # one clip in two CSVs under two labels
    one = write(
        tmp_path / "a/train.csv", "label,youtube_id,time_start,time_end\nx,ccccccccccc,1,11\n"
    )
    two = write(
        tmp_path / "b/train.csv", "label,youtube_id,time_start,time_end\ny,ccccccccccc,1,11\n"
    )
    with pytest.raises(DataError, match=re.escape(f"'x' at {one}: line 2")) as info:
        read_kinetics([one, two])
    assert info.value.path == f"{two}: line 2"


# --- matching -------------------------------------------------------------------------


def test_video_key_takes_off_video_extensions_only() -> None:
    assert video_key("/d/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi") == "v_ApplyEyeMakeup_g08_c01"
    assert video_key("/d/v_ApplyEyeMakeup_g08_c01.MP4") == "v_ApplyEyeMakeup_g08_c01"
    assert video_key("/frames/v_ApplyEyeMakeup_g08_c01.avi/") == "v_ApplyEyeMakeup_g08_c01"
    assert (
        video_key("/d/Dr._Hair_brush_hair_h_cm_np1_fr_goo_0")
        == "Dr._Hair_brush_hair_h_cm_np1_fr_goo_0"
    )


def test_match_videos_by_name_and_reports_both_sides() -> None:
    entries = {"a": {"label": "A"}, "b": {"label": "B"}, "c": {"label": "C"}}
    match = match_videos(["/x/a.mp4", "/y/z.avi", "/x/c/"], entries)
    assert match.fields == [{"label": "A"}, None, {"label": "C"}]
    assert (match.unlisted, match.missing) == (["/y/z.avi"], ["b"])
    with pytest.raises(
        DataError, match=re.escape("two videos are a of the lists: /x/a.mp4 and /y/a.avi")
    ):
        match_videos(["/x/a.mp4", "/y/a.avi"], entries)


def test_match_kinetics_bare_id_must_name_one_clip() -> None:
    entries = {kinetics_key("-3B32lodo2M", 59): {"split": "train"}}
    assert match_videos(["/v/-3B32lodo2M.mp4"], entries, kinetics=True).fields == [
        {"split": "train"}
    ]
    assert match_videos(["/v/-3B32lodo2M.mp4"], entries).fields == [None]  # not Kinetics
    entries[kinetics_key("-3B32lodo2M", 120)] = {"split": "val"}
    with pytest.raises(DataError, match="2 clips of YouTube video -3B32lodo2M"):
        match_videos(["/v/-3B32lodo2M.mp4"], entries, kinetics=True)
    both = match_videos(
        ["/v/-3B32lodo2M_000059_000069.mp4", "/v/-3B32lodo2M_000120_000130.mp4"],
        entries,
        kinetics=True,
    )
    assert both.fields == [{"split": "train"}, {"split": "val"}] and both.missing == []
