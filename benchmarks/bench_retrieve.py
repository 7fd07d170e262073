"""Retrieval: flat (exact) search through vcl against calling faiss directly and against
numpy brute force, and index build times, at 100k × 256 (cosine, k = 10).

- "vcl" is ``prepare`` (L2-normalise the queries) + ``vcl.retrieve.search`` (faiss
  search of k + 1, re-sort by (score, row), re-search where a tie crosses the k-th
  place) on the index ``build_index`` made;
- "faiss" is ``faiss.normalize_L2`` + ``index.search(q, k)`` on the same index;
- "numpy" is one float32 matrix product per block of queries plus ``argpartition``
  and a sort of the k best (the fastest plain-numpy exact search we know).

Builds: vcl's ``build_index`` against the same faiss calls made directly (IVF: seeded
training sample, nlist = N/39 by the default rule). On a GPU, faiss-gpu would be used by
``--device auto``; this machine has none, so all figures are CPU.

    python benchmarks/run.py retrieve
"""

from __future__ import annotations

import os
import time

import numpy as np

N, DIM, QUERIES, K = 100_000, 256, 2_000, 10


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-mixture features (1,000 centres), gallery N×D and queries Q×D, float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, DIM)).astype(np.float32) * 2
    pick = rng.integers(0, 1000, N + QUERIES)
    x = centres[pick] + rng.normal(size=(N + QUERIES, DIM)).astype(np.float32)
    return x[:N], x[N:]


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def race(fns, rounds: int = 3) -> list[tuple[float, float]]:
    """(best wall s, best CPU s) of each function, run in turns so load hits all alike.

    CPU time (all threads) is the steadier figure on a shared, busy machine.
    """
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[i].append(time.perf_counter() - start)
            cpu[i].append(time.process_time() - start_cpu)
    return [(min(w), min(c)) for w, c in zip(wall, cpu, strict=True)]


def numpy_search(g: np.ndarray, q: np.ndarray, k: int, block: int = 256) -> np.ndarray:
    out = np.empty((len(q), k), np.int64)
    for s in range(0, len(q), block):
        sims = q[s : s + block] @ g.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
        out[s : s + block] = np.take_along_axis(top, order, 1)
    return out


def run() -> list[dict]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    from vcl.retrieve import IndexParams, build_index, prepare, search

    gallery, queries = data()
    rows = []
    config = IndexParams(metric="cosine").resolved(N, DIM)

    t_vcl_build = best_of(lambda: build_index(prepare(gallery, "cosine"), config), 1)

    def faiss_flat():
        g = gallery.copy()
        faiss.normalize_L2(g)
        index = faiss.IndexFlatIP(DIM)
        index.add(g)
        return index

    t_faiss_build = best_of(faiss_flat, 1)
    rows.append(
        {
            "stage": "retrieve",
            "compared": f"flat index build {N // 1000}k×{DIM} (s): vcl vs faiss",
            "ours": t_vcl_build,
            "reference": t_faiss_build,
            "unit": "s",
            "higher_is_better": False,
        }
    )
    index = build_index(prepare(gallery, "cosine"), config)

    def ours():
        return search(index, prepare(queries, "cosine"), K)

    def direct():
        q = queries.copy()
        faiss.normalize_L2(q)
        return index.search(q, K)

    g_unit, q_unit = prepare(gallery, "cosine"), prepare(queries, "cosine")
    direct()  # warm up: first touches of the index's memory
    (t_faiss, c_faiss), (t_ours, c_ours) = race([direct, ours], rounds=4)
    t_numpy = best_of(lambda: numpy_search(g_unit, q_unit, K), 1)
    agree = float((ours()[1] == numpy_search(g_unit, q_unit, K)).mean())
    for name, ref in (("faiss directly", t_faiss), ("numpy brute force", t_numpy)):
        rows.append(
            {
                "stage": "retrieve",
                "compared": f"flat search queries/s, k={K}, {N // 1000}k×{DIM}: vcl vs {name}",
                "ours": QUERIES / t_ours,
                "reference": QUERIES / ref,
                "unit": "queries/s",
                "higher_is_better": True,
            }
        )
    rows.append(
        {
            "stage": "retrieve",
            "compared": f"flat search CPU s per 1000 queries, {N // 1000}k×{DIM}: vcl vs faiss",
            "ours": 1000 * c_ours / QUERIES,
            "reference": 1000 * c_faiss / QUERIES,
            "unit": "CPU s",
            "higher_is_better": False,
        }
    )
    rows.append(
        {
            "stage": "retrieve",
            "compared": "flat search: fraction of neighbour ids equal to numpy's",
            "ours": agree,
            "reference": 1.0,
            "unit": "fraction",
            "higher_is_better": True,
        }
    )

    ivf = IndexParams(index_type="ivf", metric="cosine", seed=0).resolved(N, DIM)

    def faiss_ivf():
        g = gallery.copy()
        faiss.normalize_L2(g)
        quantizer = faiss.IndexFlatIP(DIM)
        index = faiss.IndexIVFFlat(quantizer, DIM, ivf["nlist"], faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 0  # as vcl's --seed 0: k-means work depends on its start
        sample = np.random.default_rng(0).choice(N, ivf["train_size"], replace=False)
        index.train(g[np.sort(sample)])
        index.add(g)
        return index

    (w_faiss, c_faiss), (w_vcl, c_vcl) = race(
        [faiss_ivf, lambda: build_index(prepare(gallery, "cosine"), ivf)], rounds=1
    )
    for what, ours_s, ref_s in (("wall", w_vcl, w_faiss), ("CPU", c_vcl, c_faiss)):
        rows.append(
            {
                "stage": "retrieve",
                "compared": f"ivf index build, nlist={ivf['nlist']} ({what} s): vcl vs faiss",
                "ours": ours_s,
                "reference": ref_s,
                "unit": "s",
                "higher_is_better": False,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
