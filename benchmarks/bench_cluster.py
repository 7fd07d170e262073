"""Clustering: our FINCH against the authors' package (finch-clust) at 30k and 100k × 128,
and our faiss k-means against scikit-learn's KMeans at equal inertia.

Each run happens in its own child process (with ``OMP_WAIT_POLICY=PASSIVE`` for both
sides unless set), and each FINCH run, which reports its own peak resident
memory (``getrusage(RUSAGE_SELF).ru_maxrss``), so the two memory figures are comparable
(both include the interpreter, numpy, faiss and the data: ~0.2 GB).

finch-clust computes exact first neighbours from a dense N×N distance matrix only up to
``ann_threshold`` points (default 20,000; above it, it needs pynndescent, absent here, or
an approximate faiss HNSW search when ``faiss_threshold`` is lowered). At 30k we raise
``ann_threshold`` so both sides are exact and compare partitions; at 100k the dense matrix
(≥ 40 GB) cannot fit in this machine's memory, so the reference runs its approximate HNSW
path and the partitions are compared by ARI only.

Where both are exact, partitions can still differ at a float32 near-tie: finch-clust
computes level-0 cosine distances in float32, while we re-rank faiss's candidates in
float64 (at 30k: one point whose two nearest neighbours are 2e-7 apart in cosine
distance, so level 0 has ARI 0.99997 and every coarser level is identical).

    python benchmarks/run.py cluster
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 128


def mixture(n: int, seed: int = 0) -> np.ndarray:
    """n × 128 float32 points around n/100 Gaussian centres (features-like, unit noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 100, 2), DIM)) * 2.0
    return (centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, DIM))).astype(
        np.float32
    )


def child(side: str, n: int, out: str, mode: str) -> None:
    """Run one FINCH in this process; print time and peak RSS; save the hierarchy."""
    import resource
    import warnings

    x = mixture(n)
    start = time.perf_counter()
    if side == "ours":
        from vcl.cluster import finch

        result = finch(x, "cosine")
        levels, counts = result.levels, result.n_clusters
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from finch import FINCH

            if mode == "exact":
                levels, counts, _ = FINCH(x, distance="cosine", ann_threshold=n + 1)
            else:  # approximate first neighbours: faiss HNSW inside finch-clust
                levels, counts, _ = FINCH(x, distance="cosine", faiss_threshold=1)
    seconds = time.perf_counter() - start
    np.save(out, np.asarray(levels, np.int32))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_gb": peak_gb, "counts": list(map(int, counts))}))


def _run_child(args: list[str]) -> dict:
    # Passive OpenMP waiting for both sides: on a loaded machine faiss's spinning threads
    # otherwise slow it down several times (measured 8x on 2 busy cores).
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run(
        [sys.executable, __file__, "child", *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spawn(side: str, n: int, out: Path, mode: str) -> dict:
    return _run_child(["finch", side, str(n), str(out), mode])


def finch_rows(n: int, mode: str) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score

    from vcl.cluster import canonical

    with tempfile.TemporaryDirectory(prefix="vcl-bench-") as tmp:
        ours = _spawn("ours", n, Path(tmp) / "ours.npy", mode)
        ref = _spawn("ref", n, Path(tmp) / "ref.npy", mode)
        label = f"FINCH {n // 1000}k×{DIM} cosine (finch-clust {mode})"
        if "error" in ref:
            print(f"{label}: finch-clust failed: {ref['error']}", file=sys.stderr)
            return [
                {
                    "stage": "cluster",
                    "compared": f"{label}: finch-clust failed, ours alone",
                    "ours": ours["seconds"],
                    "reference": float("nan"),
                    "unit": "s",
                    "higher_is_better": False,
                }
            ]
        a, b = np.load(Path(tmp) / "ours.npy"), np.load(Path(tmp) / "ref.npy")
        common = min(a.shape[1], b.shape[1])
        same = [np.array_equal(canonical(a[:, i]), canonical(b[:, i])) for i in range(common)]
        aris = [adjusted_rand_score(b[:, i], a[:, i]) for i in range(common)]
    print(
        f"{label}: clusters per level ours {ours['counts']} vs reference {ref['counts']}; "
        f"identical levels {sum(same)} of {common}; per-level ARI "
        f"{[round(v, 6) for v in aris]}",
        file=sys.stderr,
    )
    worst = min(aris) if aris else float("nan")
    return [
        {
            "stage": "cluster",
            "compared": f"{label}: time",
            "ours": ours["seconds"],
            "reference": ref["seconds"],
            "unit": "s",
            "higher_is_better": False,
        },
        {
            "stage": "cluster",
            "compared": f"{label}: peak memory",
            "ours": ours["peak_gb"],
            "reference": ref["peak_gb"],
            "unit": "GB",
            "higher_is_better": False,
        },
        {
            "stage": "cluster",
            "compared": f"{label}: lowest per-level ARI ({sum(same)} of {common} levels identical)",
            "ours": worst,
            "reference": 1.0,
            "unit": "ARI",
        },
    ]


def kmeans_child(side: str, n: int, k: int, iters: int) -> None:
    """Lloyd from the same k-means++ start for the same iterations, in this process."""
    from vcl.cluster import kmeans, kmeans_plusplus

    x = mixture(n, seed=1)
    init = kmeans_plusplus(x, k, 0)
    start = time.perf_counter()
    if side == "ours":
        inertia = float(kmeans(x, k, iters=iters, seed=0, init=init).inertia[0])
    else:
        from sklearn.cluster import KMeans

        model = KMeans(k, init=init, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd")
        inertia = float(model.fit(x).inertia_)
    print(json.dumps({"seconds": time.perf_counter() - start, "inertia": inertia}))


def kmeans_rows(n: int = 100_000, k: int = 100, iters: int = 20) -> list[dict]:
    """Equal inertia by construction (same start, same iterations); compare time."""
    ours = _run_child(["kmeans", "ours", str(n), str(k), str(iters)])
    ref = _run_child(["kmeans", "ref", str(n), str(k), str(iters)])
    print(
        f"k-means {n // 1000}k×{DIM}, k={k}, {iters} iterations: inertia ours "
        f"{ours['inertia']:.6g} vs scikit-learn {ref['inertia']:.6g}",
        file=sys.stderr,
    )
    label = f"k-means {n // 1000}k×{DIM} k={k} ({iters} Lloyd iters, same init) vs sklearn"
    return [
        {
            "stage": "cluster",
            "compared": f"{label}: time",
            "ours": ours["seconds"],
            "reference": ref["seconds"],
            "unit": "s",
            "higher_is_better": False,
        },
        {
            "stage": "cluster",
            "compared": f"{label}: inertia",
            "ours": ours["inertia"] / 1e6,
            "reference": ref["inertia"] / 1e6,
            "unit": "×1e6",
            "higher_is_better": False,
        },
    ]


def run() -> list[dict]:
    return finch_rows(30_000, "exact") + finch_rows(100_000, "approximate") + kmeans_rows()


if __name__ == "__main__":
    if sys.argv[1:3] == ["child", "finch"]:
        child(sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif sys.argv[1:3] == ["child", "kmeans"]:
        kmeans_child(sys.argv[3], *map(int, sys.argv[4:7]))
    else:
        for row in run():
            print(row)
