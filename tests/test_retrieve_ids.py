"""vcl retrieve query --id: gallery items queried by id, their vectors read back from
the index, against querying with the item's own row of the features store."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import jsonl
from tests.test_retrieve import clustered
from tests.test_retrieve_cli import store
from vcl.errors import ExitCode
from vcl.retrieve import gallery_rows, item_vectors, prepare, read_index

N, DIM = 301, 12  # odd sizes; DIM divisible by the default PQ sub-vector count (3)
IDS = np.array([f"f{i:03d}" for i in range(N)])
ASKED = ["f008", "f123", "f300", "f000"]  # out of row order, first and last rows included
BUILD = {  # every --index of vcl retrieve index; ivf probes 2 of 9 lists (approximate)
    "flat": [],
    "hnsw": [],
    "ivf": ["--nlist", "9", "--nprobe", "2"],
    "ivfpq": ["--nlist", "9", "--nprobe", "2"],  # 301 training rows: 2-bit codes, coarse
}


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """Gaussian blobs (7 centres) in a features store with ids f000 … f300."""
    folder = tmp_path_factory.mktemp("ids")
    x = clustered(N, DIM, 7, seed=3)
    return store(folder / "gallery.zarr", x, IDS), x


def build(invoke, tmp_path, path, index_type: str, metric: str):
    out = tmp_path / f"{index_type}-{metric}.index"
    result = invoke(
        "retrieve", "index", path, "-o", out, "--index", index_type, "--metric", metric,
        "--device", "cpu", *BUILD[index_type],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def by_query(lines: list[dict]) -> dict[str, tuple[list[str], list[float]]]:
    out: dict[str, tuple[list[str], list[float]]] = {}
    for line in lines:
        names, scores = out.setdefault(line["query"], ([], []))
        names.append(line["neighbour"])
        scores.append(line["score"])
    return out


def assert_same_matches(mine: str, reference: str) -> None:
    """Identical neighbours in identical order; scores equal within 1e-5."""
    got, want = by_query(jsonl(mine)), by_query(jsonl(reference))
    assert list(got) == list(want) == ASKED
    for qid in ASKED:
        assert got[qid][0] == want[qid][0], qid
        np.testing.assert_allclose(got[qid][1], want[qid][1], rtol=0, atol=1e-5)


def row_queries(tmp_path, vectors: np.ndarray):
    """The args of a QUERY .npy holding ``vectors`` as the ids ASKED."""
    np.save(tmp_path / "q.npy", vectors)
    (tmp_path / "q.txt").write_text("".join(f"{i}\n" for i in ASKED))
    return [tmp_path / "q.npy", "--ids", tmp_path / "q.txt"]


def by_id(*ids: str) -> list[str]:
    return [arg for i in ids for arg in ("--id", i)]


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_id_query_equals_the_items_own_row_as_query(
    invoke, tmp_path, features, index_type, metric
) -> None:
    path, x = features
    index = build(invoke, tmp_path, path, index_type, metric)
    rows = [int(i[1:]) for i in ASKED]
    common = ["-k", "9", "--device", "cpu"]
    reference = invoke("retrieve", "query", index, *row_queries(tmp_path, x[rows]), *common)
    assert reference.exit_code == 0, reference.output
    mine = invoke("retrieve", "query", index, *by_id(*ASKED), *common)
    assert mine.exit_code == 0, mine.output
    assert_same_matches(mine.stdout, reference.stdout)
    if metric != "ip":  # an item is its own nearest neighbour (ip favours long rows)
        firsts = [line["neighbour"] for line in jsonl(mine.stdout) if line["rank"] == 1]
        assert firsts == ASKED
    assert "PQ" not in mine.stderr


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_ivfpq_id_query_is_its_decoded_code_with_a_note(invoke, tmp_path, features, metric):
    """An ivfpq index holds codes, not features: --id X queries with X's code decoded
    (faiss's sa_decode of sa_encode of X's indexed row, a reference computed apart)."""
    import faiss

    path, x = features
    index = build(invoke, tmp_path, path, "ivfpq", metric)
    raw = faiss.read_index(str(index))
    rows = [int(i[1:]) for i in ASKED]
    decoded = raw.sa_decode(raw.sa_encode(prepare(x[rows], metric)))
    assert np.abs(decoded - prepare(x[rows], metric)).max() > 0.05  # lossy indeed
    common = ["-k", "9", "--device", "cpu"]
    reference = invoke("retrieve", "query", index, *row_queries(tmp_path, decoded), *common)
    assert reference.exit_code == 0, reference.output
    mine = invoke("retrieve", "query", index, *by_id(*ASKED), *common)
    assert mine.exit_code == 0, mine.output
    assert_same_matches(mine.stdout, reference.stdout)
    notes = [line for line in mine.stderr.splitlines() if "decoded PQ codes" in line]
    assert len(notes) == 1


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf", "ivfpq"])
def test_item_vectors_read_back_from_a_read_index(tmp_path, features, index_type) -> None:
    """The library function: the indexed (normalised) rows for exact indexes; for ivfpq
    unit-norm decoded codes under cosine."""
    from tests.conftest import cli

    path, x = features
    out = tmp_path / "g.index"
    built = cli("retrieve", "index", path, "-o", out, "--index", index_type, *BUILD[index_type])
    assert built.exit_code == 0, built.output
    gallery = read_index(out)
    rows = gallery_rows(gallery, ASKED)
    np.testing.assert_array_equal(rows, [8, 123, 300, 0])
    got = item_vectors(gallery, rows)
    assert got.shape == (4, DIM) and got.dtype == np.float32
    if index_type == "ivfpq":
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, prepare(x, "cosine")[rows])


@pytest.mark.parametrize("index_type", ["flat", "ivfpq"])
def test_exclude_self_drops_the_item_itself(invoke, tmp_path, features, index_type) -> None:
    path, _ = features
    index = build(invoke, tmp_path, path, index_type, "cosine")
    common = [*by_id(*ASKED), "--device", "cpu"]
    full = by_query(jsonl(invoke("retrieve", "query", index, *common, "-k", "40").stdout))
    result = invoke("retrieve", "query", index, *common, "-k", "5", "--exclude-self")
    assert result.exit_code == 0, result.output
    left = by_query(jsonl(result.stdout))
    for qid in ASKED:
        assert qid in full[qid][0]  # found without --exclude-self …
        others = [n for n in full[qid][0] if n != qid]
        assert left[qid][0] == others[:5]  # … and only it dropped with it


def test_unknown_id_is_one_error_line(invoke, tmp_path, features) -> None:
    path, _ = features
    index = build(invoke, tmp_path, path, "flat", "cosine")
    result = invoke("retrieve", "query", index, "--id", "f008", "--id", "x", "--device", "cpu")
    assert result.exit_code == ExitCode.DATA
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {index}: no gallery item 'x' (ids look like 'f000', 'f001', 'f002', …)"
    ]
    assert "Traceback" not in result.output


def test_id_and_query_together_or_neither_are_usage_errors(invoke, tmp_path, features) -> None:
    path, x = features
    index = build(invoke, tmp_path, path, "flat", "cosine")
    np.save(tmp_path / "q.npy", x[:2])
    result = invoke("retrieve", "query", index, tmp_path / "q.npy", "--id", "f008")
    assert result.exit_code == ExitCode.USAGE
    assert "--id and QUERY" in result.stderr and result.stdout == ""
    result = invoke("retrieve", "query", index)
    assert result.exit_code == ExitCode.USAGE
    assert "give QUERY... or --id ID" in result.stderr


def test_a_query_path_that_is_a_gallery_id_hints_at_id(
    invoke, tmp_path, features, monkeypatch
) -> None:
    path, _ = features
    index = build(invoke, tmp_path, path, "flat", "cosine")
    monkeypatch.chdir(tmp_path)  # where no file f008 lies
    result = invoke("retrieve", "query", index, "f008")
    assert result.exit_code == ExitCode.NO_INPUT
    assert result.stderr.splitlines()[-1] == (
        "error: f008: no such query file, folder or features store; "
        "use --id f008 to query a gallery item"
    )
    result = invoke("retrieve", "query", index, "f999")  # not a gallery id: no hint
    assert result.exit_code == ExitCode.NO_INPUT
    assert result.stderr.splitlines()[-1] == (
        "error: f999: no such query file, folder or features store"
    )
