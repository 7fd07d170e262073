"""Clustering: our FINCH against the authors' package (finch-clust) at 30k and 100k × 128,
and our faiss k-means against scikit-learn's KMeans at equal inertia.

Fairness: the data are generated once and saved; every run is its own child process that
loads them (so its peak resident memory, VmHWM, counts the interpreter, the libraries,
the 128-d float32 data and the algorithm, not the generator nor this parent process),
with the same thread count for both sides (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``; ``VCL_BENCH_THREADS``, default all cores) and passive OpenMP waiting
(on a loaded machine faiss's spinning threads otherwise slow it several times). Times are
the median of ``VCL_BENCH_REPEATS`` (default 3) alternating runs; memory the largest peak.

finch-clust's mode is named on every row. It computes exact first neighbours from a dense
N×N float32 distance matrix only up to ``ann_threshold`` points (default 20,000; above,
it needs pynndescent, absent here, or an approximate faiss HNSW search when
``faiss_threshold`` is lowered). At 30k we raise ``ann_threshold`` so both sides are exact
(~10 GB for finch-clust) and compare partitions level by level; at 100k the dense matrix
(≥ 40 GB) cannot fit in this machine's memory, so finch-clust runs its approximate HNSW
path (M = 16, efConstruction = 200, efSearch = 64) and partitions are compared by ARI.
Ours is exact in both (cell-pruned float32 BLAS sweeps, near-ties settled in float64).

Where both are exact, partitions can differ only at a float32 near-tie: finch-clust
compares float32 cosine distances, we settle near-ties in float64 (at 30k: one point whose
two nearest neighbours are 2e-7 apart in cosine distance, so level 0 has ARI 0.99997 and
every coarser level is identical).

    python benchmarks/run.py cluster
"""

from __future__ import annotations

import json
import os
import statistics
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


def _peak_gb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which starts afresh at exec;
    ru_maxrss would also count the parent's memory at fork (measured: a child of a
    640 MB parent reports 637 MB)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def child(side: str, data: str, out: str, mode: str) -> None:
    """Run one FINCH in this process; print time and peak RSS; save the hierarchy."""
    import warnings

    x = np.load(data)
    start = time.perf_counter()
    if side == "ours":
        from vcl.cluster import finch

        result = finch(x, "cosine")
        levels, counts = result.levels, result.n_clusters
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from finch import FINCH

            n = len(x)
            if mode == "exact":
                levels, counts, _ = FINCH(x, distance="cosine", ann_threshold=n + 1)
            else:  # approximate first neighbours: faiss HNSW inside finch-clust
                levels, counts, _ = FINCH(x, distance="cosine", faiss_threshold=1)
    seconds = time.perf_counter() - start
    np.save(out, np.asarray(levels, np.int32))
    counts = list(map(int, counts))
    print(json.dumps({"seconds": seconds, "peak_gb": _peak_gb(), "counts": counts}))


def _threads() -> int:
    return int(os.environ.get("VCL_BENCH_THREADS", os.cpu_count() or 1))


def _run_child(args: list[str]) -> dict:
    threads = str(_threads())
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }
    proc = subprocess.run(
        [sys.executable, __file__, "child", *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _repeats() -> int:
    return max(1, int(os.environ.get("VCL_BENCH_REPEATS", "3")))


def finch_rows(n: int, mode: str) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score

    from vcl.cluster import canonical

    label = f"FINCH {n // 1000}k×{DIM} cosine, ours exact vs finch-clust {mode}"
    with tempfile.TemporaryDirectory(prefix="vcl-bench-") as tmp:
        data = Path(tmp) / "x.npy"
        np.save(data, mixture(n))
        runs: dict[str, list[dict]] = {"ours": [], "ref": []}
        for _ in range(_repeats()):  # alternate the sides: load changes hit both alike
            for side in ("ours", "ref"):
                out = Path(tmp) / f"{side}.npy"
                runs[side].append(_run_child(["finch", side, str(data), str(out), mode]))
        ours, ref = runs["ours"], runs["ref"]
        failed = [r["error"] for r in ours + ref if "error" in r]
        if failed:
            print(f"{label}: a run failed: {failed[0]}", file=sys.stderr)
            return []
        a, b = np.load(Path(tmp) / "ours.npy"), np.load(Path(tmp) / "ref.npy")
    common = min(a.shape[1], b.shape[1])
    same = [np.array_equal(canonical(a[:, i]), canonical(b[:, i])) for i in range(common)]
    aris = [adjusted_rand_score(b[:, i], a[:, i]) for i in range(common)]
    times = {side: [r["seconds"] for r in rs] for side, rs in runs.items()}
    print(
        f"{label}: seconds ours {[round(t, 1) for t in times['ours']]}, finch-clust "
        f"{[round(t, 1) for t in times['ref']]}; clusters per level ours {ours[0]['counts']} "
        f"vs finch-clust {ref[0]['counts']}; identical levels {sum(same)} of {common}; "
        f"per-level ARI {[round(v, 6) for v in aris]}",
        file=sys.stderr,
    )
    worst = min(aris) if aris else float("nan")
    return [
        {
            "stage": "cluster",
            "compared": f"{label}: time (median of {len(ours)})",
            "ours": statistics.median(times["ours"]),
            "reference": statistics.median(times["ref"]),
            "unit": "s",
            "higher_is_better": False,
        },
        {
            "stage": "cluster",
            "compared": f"{label}: peak memory",
            "ours": max(r["peak_gb"] for r in ours),
            "reference": max(r["peak_gb"] for r in ref),
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
    ours, ref = [], []
    for _ in range(_repeats()):
        ours.append(_run_child(["kmeans", "ours", str(n), str(k), str(iters)]))
        ref.append(_run_child(["kmeans", "ref", str(n), str(k), str(iters)]))
    if any("error" in r for r in ours + ref):
        print("k-means benchmark: a run failed", file=sys.stderr)
        return []
    print(
        f"k-means {n // 1000}k×{DIM}, k={k}, {iters} iterations: inertia ours "
        f"{ours[0]['inertia']:.6g} vs scikit-learn {ref[0]['inertia']:.6g}",
        file=sys.stderr,
    )
    label = f"k-means {n // 1000}k×{DIM} k={k} ({iters} Lloyd iters, same init) vs sklearn"
    return [
        {
            "stage": "cluster",
            "compared": f"{label}: time (median of {len(ours)})",
            "ours": statistics.median(r["seconds"] for r in ours),
            "reference": statistics.median(r["seconds"] for r in ref),
            "unit": "s",
            "higher_is_better": False,
        },
        {
            "stage": "cluster",
            "compared": f"{label}: inertia",
            "ours": ours[0]["inertia"] / 1e6,
            "reference": ref[0]["inertia"] / 1e6,
            "unit": "×1e6",
            "higher_is_better": False,
        },
    ]


def run() -> list[dict]:
    return finch_rows(30_000, "exact") + finch_rows(100_000, "approximate") + kmeans_rows()


if __name__ == "__main__":
    if sys.argv[1:3] == ["child", "finch"]:
        child(*sys.argv[3:7])
    elif sys.argv[1:3] == ["child", "kmeans"]:
        kmeans_child(sys.argv[3], *map(int, sys.argv[4:7]))
    else:
        for row in run():
            print(row)
