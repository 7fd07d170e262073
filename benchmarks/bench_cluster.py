"""Clustering: our FINCH (exact, and with ``neighbours="approximate"``) against the
authors' package (finch-clust) at 30k and 100k × 128, and our faiss k-means against
scikit-learn's KMeans at equal inertia.

Fairness: the data are generated once and saved; every run is its own child process that
loads them (so its peak resident memory, VmHWM, counts the interpreter, the libraries,
the 128-d float32 data and the algorithm, not the generator nor this parent process),
with the same thread count for both sides (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS``; ``VCL_BENCH_THREADS``, default all cores) and
passive OpenMP waiting (on a loaded machine faiss's spinning threads otherwise slow it
several times). Times are the median of ``VCL_BENCH_REPEATS`` (default 3) runs, the
sides alternating; memory the largest peak; CPU seconds (all threads) are reported too,
as they depend less on the machine's load than wall time does.

Every row names both sides' modes. finch-clust computes exact first neighbours from a
dense N×N float32 distance matrix only up to ``ann_threshold`` points (default 20,000);
above, by default, it runs pynndescent's NN-descent (non-deterministic; when pynndescent is
missing we lower ``faiss_threshold`` so it runs its faiss HNSW search instead, and say
so). At 30k we also raise ``ann_threshold`` so that both sides are exact (~10 GB for
finch-clust) and compare partitions level by level; at 100k the dense matrix (≥ 40 GB)
cannot fit in this machine's memory, so finch-clust runs only its approximate path.
Ours exact: cell-pruned float32 BLAS sweeps, near-ties settled in float64. Ours
approximate: a seeded faiss IVF index (nlist ≈ 4√N, nprobe raised until a sampled recall
reaches 0.995) at levels of ≥ 20,000 points, exact below.

What our approximate side's peak holds (measured at 100k × 128 with /proc/self/status
around each step): the interpreter, numpy and the 51 MB of data (~0.08 GB); importing
faiss (~0.165 GB, of which ~0.14 GB is the CUDA libcublasLt that this faiss-gpu build
loads even on a CPU-only path); the IVF index's copy of one part of the points (the
index holds ≤ 65,536 points at a time, candidates merged across parts: 26 MB at 100k
in two parts, where one index held 51 MB); faiss's k-means and BLAS scratch (~0.02 GB,
kept by the process). The peak (0.30 GB) is now the next level's exact search on the
11.6k cluster means, with 4 MB score blocks. Everything else (normalised rows, the
quantizer's scores, the float64 re-rank) exists a block of rows at a time. Connected
components are found by pointer doubling in numpy (importing scipy for them cost ~0.03
GB). Tried and dropped: a float16 copy in the index (the candidates' order then misses
exact first neighbours among near-equal cosines), and a faiss-free search of the exact
search's cells nearest each point's cell (0.18 GB, but recall 0.997 and ~2× the CPU
time).

Quality of the approximate mode, printed on stderr and given as rows: the first-neighbour
recall (fraction of points whose first neighbour is the exact one) and the agreement
(ARI, NMI) of each level with our exact hierarchy; finch-clust's approximate partitions
get the same comparison with our exact ones.

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


def _has_pynndescent() -> bool:
    import importlib.util

    return importlib.util.find_spec("pynndescent") is not None


def child(side: str, data: str, out: str, recall: str = "no") -> None:
    """Run one FINCH in this process; print time, CPU time and peak RSS; save the levels.

    ``side``: ours-exact, ours-approximate, ref-exact or ref-approximate. With ``recall``
    = "yes" (ours-approximate), after the measurements, also the level-0 search's recall
    against the exact first neighbours."""
    import warnings

    x = np.load(data)
    extra: dict = {}
    start, cpu = time.perf_counter(), time.process_time()
    if side.startswith("ours"):
        from vcl.cluster import finch

        neighbours = side.removeprefix("ours-")
        result = finch(x, "cosine", neighbours=neighbours, seed=0)
        levels, counts = result.levels, result.n_clusters
        extra["search"] = result.approximate
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from finch import FINCH

            n = len(x)
            if side == "ref-exact":
                levels, counts, _ = FINCH(x, distance="cosine", ann_threshold=n + 1)
            elif _has_pynndescent():  # its default past 20k points: NN-descent
                levels, counts, _ = FINCH(x, distance="cosine")
            else:  # approximate first neighbours: faiss HNSW inside finch-clust
                levels, counts, _ = FINCH(x, distance="cosine", faiss_threshold=1)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _peak_gb()
    np.save(out, np.asarray(levels, np.int32))
    if recall == "yes":
        from vcl.cluster import approximate_first_neighbours, first_neighbours

        exact, _ = first_neighbours(x, "cosine")
        approx, _, info = approximate_first_neighbours(x, "cosine", seed=0)
        extra["recall"] = float((approx == exact).mean())
        extra["estimated_recall"] = info["estimated_recall"]
    counts = list(map(int, counts))
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_gb": peak, "counts": counts, **extra}))


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
        "NUMBA_NUM_THREADS": threads,
    }
    proc = subprocess.run(
        [sys.executable, __file__, "child", *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _repeats() -> int:
    return max(1, int(os.environ.get("VCL_BENCH_REPEATS", "3")))


def _agreement(ours: np.ndarray, other: np.ndarray) -> list[tuple[float, float]]:
    """(ARI, NMI) of each level the two hierarchies share."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return [
        (
            adjusted_rand_score(ours[:, i], other[:, i]),
            normalized_mutual_info_score(ours[:, i], other[:, i]),
        )
        for i in range(min(ours.shape[1], other.shape[1]))
    ]


def _name(side: str) -> str:
    if side.startswith("ours"):
        return f"ours {side.removeprefix('ours-')}"
    if side == "ref-exact":
        return "finch-clust exact"
    how = "pynndescent" if _has_pynndescent() else "faiss HNSW"
    return f"finch-clust approximate ({how})"


def finch_rows(n: int) -> list[dict]:
    """Time, CPU time and memory of our two modes against finch-clust's modes at n × 128,
    and the partitions' agreement with our exact hierarchy."""
    from vcl.cluster import canonical

    sides = ["ours-exact", "ours-approximate", "ref-approximate"]
    if n <= 30_000:  # finch-clust's exact path needs N² floats: ~10 GB at 30k
        sides.append("ref-exact")
    size = f"FINCH {n // 1000}k×{DIM} cosine"
    with tempfile.TemporaryDirectory(prefix="vcl-bench-") as tmp:
        data = Path(tmp) / "x.npy"
        np.save(data, mixture(n))
        if _has_pynndescent():  # compile its numba functions (cached) before timing
            warm = Path(tmp) / "warm.npy"
            np.save(warm, mixture(21_000, seed=1))
            _run_child(["finch", "ref-approximate", str(warm), str(Path(tmp) / "w.npy")])
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for repeat in range(_repeats()):  # alternate the sides: load changes hit all alike
            for side in sides:
                out = Path(tmp) / f"{side}-{repeat}.npy"
                flag = "yes" if side == "ours-approximate" and repeat == 0 else "no"
                runs[side].append(_run_child(["finch", side, str(data), str(out), flag]))
        failed = [r["error"] for rs in runs.values() for r in rs if "error" in r]
        if failed:
            print(f"{size}: a run failed: {failed[0]}", file=sys.stderr)
            return []
        levels = {side: np.load(Path(tmp) / f"{side}-0.npy") for side in sides}
    exact = levels["ours-exact"]
    agree = {side: _agreement(exact, levels[side]) for side in sides if side != "ours-exact"}
    identical = {
        side: sum(
            np.array_equal(canonical(exact[:, i]), canonical(levels[side][:, i]))
            for i in range(min(exact.shape[1], levels[side].shape[1]))
        )
        for side in agree
    }
    approx = runs["ours-approximate"][0]
    for side in sides:
        times = [round(r["seconds"], 1) for r in runs[side]]
        print(
            f"{size}, {_name(side)}: seconds {times}, CPU seconds "
            f"{[round(r['cpu'], 1) for r in runs[side]]}, peak GB "
            f"{[round(r['peak_gb'], 2) for r in runs[side]]}, clusters per level "
            f"{runs[side][0]['counts']}",
            file=sys.stderr,
        )
    for side, values in agree.items():
        print(
            f"{size}, {_name(side)} vs ours exact: per-level (ARI, NMI) "
            f"{[(round(a, 5), round(b, 5)) for a, b in values]}; identical levels "
            f"{identical[side]} of {len(values)}",
            file=sys.stderr,
        )
    print(
        f"{size}, ours approximate: level-0 first-neighbour recall {approx['recall']:.6f} "
        f"(estimated from its sample: {approx['estimated_recall']:.4f}); search {approx['search']}",
        file=sys.stderr,
    )

    def compare(ours: str, ref: str) -> list[dict]:
        label = f"{size}, {_name(ours)} vs {_name(ref)}"
        a, b = runs[ours], runs[ref]
        return [
            {
                "stage": "cluster",
                "compared": f"{label}: time (median of {len(a)})",
                "ours": statistics.median(r["seconds"] for r in a),
                "reference": statistics.median(r["seconds"] for r in b),
                "unit": "s",
                "higher_is_better": False,
            },
            {
                "stage": "cluster",
                "compared": f"{label}: CPU time, all threads (median of {len(a)})",
                "ours": statistics.median(r["cpu"] for r in a),
                "reference": statistics.median(r["cpu"] for r in b),
                "unit": "s",
                "higher_is_better": False,
            },
            {
                "stage": "cluster",
                "compared": f"{label}: peak memory",
                "ours": max(r["peak_gb"] for r in a),
                "reference": max(r["peak_gb"] for r in b),
                "unit": "GB",
                "higher_is_better": False,
            },
        ]

    rows = compare("ours-exact", "ref-approximate") + compare("ours-approximate", "ref-approximate")
    if "ref-exact" in sides:
        rows += compare("ours-exact", "ref-exact")
    for side in ("ours-approximate", "ref-approximate", "ref-exact"):
        if side not in agree:
            continue
        values = agree[side]
        first = min(3, len(values))
        rows.append(
            {
                "stage": "cluster",
                "compared": f"{size}, {_name(side)}: lowest ARI with ours exact, levels 0-"
                f"{first - 1} ({identical[side]} of {len(values)} levels identical)",
                "ours": min(a for a, _ in values[:first]),
                "reference": 1.0,
                "unit": "ARI",
            }
        )
    rows.append(
        {
            "stage": "cluster",
            "compared": f"{size}, ours approximate: level-0 first-neighbour recall vs exact",
            "ours": approx["recall"],
            "reference": 1.0,
            "unit": "recall",
        }
    )
    return rows


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
    sizes = [int(v) for v in os.environ.get("VCL_BENCH_FINCH_SIZES", "30000,100000").split(",")]
    return [row for n in sizes for row in finch_rows(n)] + kmeans_rows()


if __name__ == "__main__":
    if sys.argv[1:3] == ["child", "finch"]:
        child(*sys.argv[3:8])
    elif sys.argv[1:3] == ["child", "kmeans"]:
        kmeans_child(sys.argv[3], *map(int, sys.argv[4:7]))
    else:
        for row in run():
            print(row)
