"""Clustering quality: the figures the ODC / ODCT / SLIC / Video LA papers report.

All work on integer-coded assignments and go through a sparse contingency table, so the
cost is O(N + nonzero cells): no Python loop over samples.

- :func:`nmi`, :func:`ami`, :func:`ari`: as scikit-learn defines them (NMI and AMI with
  the arithmetic-mean normaliser), checked against it in the tests;
- :func:`purity`: each cluster's majority class, summed, over N;
- :func:`mean_group_entropy`: ODCT's intra-track / intra-class entropy (Table II): the
  Shannon entropy of one track's (class's) samples over the clusters, averaged over
  tracks (classes), 0 when every track falls in a single cluster; natural log (nats)
  unless ``base=2`` (bits);
- :func:`size_stats`: empty clusters, min/max/mean size, Gini coefficient of sizes;
- :func:`change_ratio`: ODC's fraction of samples whose cluster changed between two
  assignments, with no relabelling (cluster ids are compared as they are).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def encode(values: np.ndarray) -> np.ndarray:
    """Any labels (str, int) → (N,) int64 codes 0..K-1."""
    return np.unique(np.asarray(values), return_inverse=True)[1].reshape(-1).astype(np.int64)


def contingency(a: np.ndarray, b: np.ndarray) -> Any:
    """Sparse (K_a × K_b) table of co-occurrence counts of two codings of the same N items."""
    import scipy.sparse as sp

    a, b = encode(a), encode(b)
    shape = (int(a.max()) + 1 if len(a) else 0, int(b.max()) + 1 if len(b) else 0)
    table = sp.coo_matrix((np.ones(len(a), np.int64), (a, b)), shape=shape).tocsr()
    table.sum_duplicates()
    return table


def _entropy(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts / total
    return float(-(p * np.log(p)).sum())


def _mutual_info(table: Any) -> float:
    n = table.sum()
    rows = np.asarray(table.sum(axis=1)).ravel().astype(np.float64)
    cols = np.asarray(table.sum(axis=0)).ravel().astype(np.float64)
    coo = table.tocoo()
    nij = coo.data.astype(np.float64)
    # Σ p_ij log(p_ij / (p_i p_j)) = Σ nij/n (log nij + log n − log a_i − log b_j)
    terms = nij / n * (np.log(nij) + np.log(n) - np.log(rows[coo.row]) - np.log(cols[coo.col]))
    return max(float(terms.sum()), 0.0)


def _trivial(a: np.ndarray, b: np.ndarray) -> bool:
    """Both codings put everything in one cluster (or are empty): sklearn's 1.0 case."""
    ka, kb = len(np.unique(a)), len(np.unique(b))
    return (ka == kb == 1) or (ka == kb == 0)


def _same_partition(table: Any) -> bool:
    """The two codings are one partition under other ids (one cell per row and column)."""
    return table.nnz == table.shape[0] == table.shape[1]


def nmi(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Normalised mutual information, MI / mean(H(labels), H(clusters)); exactly 1.0 for
    the same partition (rounding would give 1 ± 2 ulp)."""
    if _trivial(labels, clusters):
        return 1.0
    table = contingency(labels, clusters)
    if _same_partition(table):
        return 1.0
    mi = _mutual_info(table)
    h_a = _entropy(np.asarray(table.sum(axis=1)).ravel())
    h_b = _entropy(np.asarray(table.sum(axis=0)).ravel())
    normaliser = (h_a + h_b) / 2
    if mi == 0 or normaliser == 0:
        return 0.0
    return float(mi / max(normaliser, np.finfo(np.float64).eps))


def expected_mutual_info(rows: np.ndarray, cols: np.ndarray, n: int) -> float:
    """E[MI] of two random codings with these marginals (Vinh et al. 2010, Eq. 24a).

    Σ_i Σ_j Σ_{nij} nij/n · log(n·nij / (a_i b_j)) · P_hypergeometric(nij | a_i, b_j, n),
    evaluated over distinct row sizes × distinct column sizes (weighted by how often each
    occurs) in blocks of at most ~4M terms.
    """
    from scipy.special import gammaln

    a_vals, a_mult = np.unique(rows[rows > 0], return_counts=True)
    b_vals, b_mult = np.unique(cols[cols > 0], return_counts=True)
    a_vals, b_vals = a_vals.astype(np.float64), b_vals.astype(np.float64)
    lg = gammaln(np.arange(n + 2, dtype=np.float64))  # lg[m + 1] = log(m!)
    total = 0.0
    for a, am in zip(a_vals, a_mult, strict=True):
        lo = np.maximum(1.0, a + b_vals - n)  # (B,) smallest possible nij
        hi = np.minimum(a, b_vals)  # (B,) largest
        width = int((hi - lo).max()) + 1
        step = max(1, (4 << 20) // max(len(b_vals), 1))
        fixed = (
            lg[int(a) + 1]
            + lg[(b_vals + 1).astype(np.int64)]
            + lg[int(n - a) + 1]
            + lg[(n - b_vals + 1).astype(np.int64)]
            - lg[n + 1]
        )  # (B,)
        for s in range(0, width, step):
            nij = lo[:, None] + np.arange(s, min(s + step, width))[None, :]  # (B, w)
            valid = nij <= hi[:, None]
            nij = np.where(valid, nij, 1.0)
            ni = nij.astype(np.int64)
            with np.errstate(invalid="ignore"):
                log_p = (
                    fixed[:, None]
                    - lg[ni + 1]
                    - lg[(a - nij + 1).astype(np.int64)]
                    - lg[np.maximum(b_vals[:, None] - nij + 1, 0).astype(np.int64)]
                    - lg[np.maximum(n - a - b_vals[:, None] + nij + 1, 0).astype(np.int64)]
                )
            term = nij / n * (np.log(n) + np.log(nij) - np.log(a) - np.log(b_vals)[:, None])
            with np.errstate(invalid="ignore", over="ignore"):
                term = np.where(valid, term * np.exp(log_p), 0.0)
            total += am * float((term.sum(axis=1) * b_mult).sum())
    return total


def ami(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Adjusted mutual information, (MI − E[MI]) / (mean(H_a, H_b) − E[MI]); exactly 1.0
    for the same partition."""
    if _trivial(labels, clusters):
        return 1.0
    table = contingency(labels, clusters)
    if _same_partition(table):
        return 1.0
    n = int(table.sum())
    rows = np.asarray(table.sum(axis=1)).ravel()
    cols = np.asarray(table.sum(axis=0)).ravel()
    mi = _mutual_info(table)
    emi = expected_mutual_info(rows, cols, n)
    normaliser = (_entropy(rows) + _entropy(cols)) / 2
    denominator = normaliser - emi
    eps = np.finfo(np.float64).eps
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return float((mi - emi) / denominator)


def ari(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Adjusted Rand index from the pair-confusion counts (Hubert & Arabie 1985)."""
    table = contingency(labels, clusters)
    n = float(table.sum())
    nij = table.data.astype(np.float64)
    rows = np.asarray(table.sum(axis=1)).ravel().astype(np.float64)
    cols = np.asarray(table.sum(axis=0)).ravel().astype(np.float64)
    sum_sq = float((nij**2).sum())
    tp = sum_sq - n  # ordered pairs together in both (×2, as sklearn counts)
    fp = float((cols**2).sum()) - sum_sq
    fn = float((rows**2).sum()) - sum_sq
    tn = n * n - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 1.0
    return float(2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)))


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Σ over clusters of its most frequent class's count, / N."""
    if len(labels) == 0:
        return 0.0
    table = contingency(clusters, labels)  # clusters × classes
    return float(np.asarray(table.max(axis=1).todense()).sum() / len(labels))


def group_entropies(groups: np.ndarray, clusters: np.ndarray, base: float = np.e) -> np.ndarray:
    """(G,) Shannon entropy of each group's samples over clusters, in log ``base``."""
    table = contingency(groups, clusters).tocoo()  # groups × clusters
    sizes = np.bincount(table.row, weights=table.data, minlength=table.shape[0])
    p = table.data / sizes[table.row]
    h = np.bincount(table.row, weights=-p * np.log(p), minlength=table.shape[0])
    return h / np.log(base)


def mean_group_entropy(groups: np.ndarray, clusters: np.ndarray, base: float = np.e) -> float:
    """ODCT's intra-track (groups = tracks) or intra-class (groups = classes) entropy."""
    if len(groups) == 0:
        return float("nan")
    return float(group_entropies(groups, clusters, base).mean())


def gini(sizes: np.ndarray) -> float:
    """Gini coefficient of cluster sizes: 0 all equal, → 1 all in one cluster."""
    x = np.sort(np.asarray(sizes, dtype=np.float64))
    k, total = len(x), x.sum()
    if k == 0 or total == 0:
        return 0.0
    return float(2.0 * (np.arange(1, k + 1) * x).sum() / (k * total) - (k + 1) / k)


def size_stats(clusters: np.ndarray, k: int | None = None) -> dict[str, Any]:
    """Cluster sizes: ``k`` counts declared clusters (so empty ones are seen); without
    it, the distinct ids are the clusters (JSONL ids need not be 0..k-1)."""
    clusters = np.asarray(clusters, dtype=np.int64)
    if k is None:
        sizes = np.unique(clusters, return_counts=True)[1]
        k = len(sizes)
    else:
        k = int(k)
        sizes = np.bincount(clusters, minlength=k) if len(clusters) else np.zeros(k, np.int64)
    non_empty = sizes[sizes > 0]
    return {
        "clusters": int(k),
        "non_empty": len(non_empty),
        "empty": int(k - len(non_empty)),
        "min": int(non_empty.min()) if len(non_empty) else 0,
        "max": int(sizes.max()) if k else 0,
        "mean": float(sizes.mean()) if k else 0.0,
        "gini": gini(sizes),
    }


def change_ratio(before: np.ndarray, after: np.ndarray) -> float:
    """Fraction of samples whose cluster id differs between two aligned assignments."""
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape:
        raise ValueError(f"assignments differ in length: {before.shape} vs {after.shape}")
    return float((before != after).mean()) if len(before) else 0.0


def join(ids: np.ndarray, other_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (i, j) with ``ids[i] == other_ids[j]``: the join by id (never by row)."""
    _, i, j = np.intersect1d(
        np.asarray(ids).astype(str), np.asarray(other_ids).astype(str), return_indices=True
    )
    order = np.argsort(i, kind="stable")  # keep the clusters' row order
    return i[order], j[order]


def evaluate(
    ids: np.ndarray,
    clusters: np.ndarray,
    k: int | None = None,
    labels: tuple[np.ndarray, np.ndarray] | None = None,
    tracks: tuple[np.ndarray, np.ndarray] | None = None,
    other: tuple[np.ndarray, np.ndarray] | None = None,
    base: float = np.e,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every metric the inputs allow, as one JSON-able dict.

    ``clusters`` (N,) with −1 = not clustered (a dropped row); ``labels``, ``tracks`` and
    ``other`` are (ids, values) pairs joined to ``ids`` by id, "" meaning unknown.
    ``names`` maps "clusters" / "labels" / "tracks" / "vs" to file names for messages.
    """
    from vcl.errors import DataError, first_ids

    names = names or {}
    ids = np.asarray(ids).astype(str)
    clusters = np.asarray(clusters, dtype=np.int64)
    assigned = clusters >= 0
    if not assigned.any():
        what = "no rows" if len(ids) == 0 else f"none of its {len(ids)} rows is in a cluster"
        raise DataError(f"{what}: nothing to evaluate", names.get("clusters"))
    unit = "nats" if base == np.e else "bits" if base == 2 else f"log{base:g}"
    out: dict[str, Any] = {
        "samples": len(ids),
        "unassigned": int((~assigned).sum()),
        "entropy_unit": unit,
        "sizes": size_stats(clusters[assigned], k),
    }
    if labels is not None:
        i, j = join(ids, labels[0])
        label_ids = np.asarray(labels[0]).astype(str)
        labelled_ids = label_ids[np.asarray(labels[1]).astype(str) != ""]
        if len(i) == 0:
            raise DataError(
                f"none of its {len(labels[0])} ids are among the {len(ids)} clustered ids of "
                f"{names.get('clusters', 'the clusters')} (ids here: {first_ids(label_ids)}; "
                f"clustered: {first_ids(ids[assigned])})",
                names.get("labels"),
                "pass the labels of the same items (ids must match)",
            )
        value = labels[1][j].astype(str)
        keep = (value != "") & assigned[i]
        if not keep.any():  # scores on no sample would read as perfect (NMI 1.0)
            has = (
                f"its {len(labelled_ids)} labelled ids: {first_ids(labelled_ids)}"
                if len(labelled_ids)
                else f"none of its {len(label_ids)} ids has one"
            )
            raise DataError(
                f"no id of the clusters in {names.get('clusters', 'the clusters')} has a label "
                f"here ({has}; clustered: {first_ids(ids[assigned])})",
                names.get("labels"),
                "pass the labels of the same items (ids must match, label must be set)",
            )
        cl, lab = clusters[i][keep], value[keep]
        out |= {
            "labelled": int(keep.sum()),
            "unlabelled": int(assigned.sum() - keep.sum()),
            "label_ids_not_clustered": int(len(labels[0]) - len(i)),
            "classes": len(np.unique(lab)),
            "nmi": nmi(lab, cl),
            "ami": ami(lab, cl),
            "ari": ari(lab, cl),
            "purity": purity(lab, cl),
            "intra_class_entropy": mean_group_entropy(lab, cl, base),
        }
    if tracks is not None:
        i, j = join(ids, tracks[0])
        value = tracks[1][j].astype(str)
        keep = (value != "") & assigned[i]
        if not (tracks[1] != "").any():  # e.g. a vcl.track/1 file: one line per track
            raise DataError(
                "has no track_id field",
                names.get("tracks"),
                "give one line (or row) per clustered item with its id and track_id, e.g. "
                "the features or crops store of the items",
            )
        if not keep.any():
            raise DataError(
                "none of its ids with a track_id are among the clustered ids",
                names.get("tracks"),
                "pass the tracks of the same items (ids must match)",
            )
        out |= {
            "tracks": len(np.unique(value[keep])),
            "untracked": int(assigned.sum() - keep.sum()),
            "intra_track_entropy": mean_group_entropy(value[keep], clusters[i][keep], base),
        }
    if other is not None:
        i, j = join(ids, other[0])
        other_clusters = np.asarray(other[1], dtype=np.int64)[j]
        keep = assigned[i] & (other_clusters >= 0)
        if not keep.any():
            raise DataError(
                "shares no clustered id with the clusters evaluated",
                names.get("vs"),
                "compare two clusterings of the same items",
            )
        out |= {
            "compared": int(keep.sum()),
            "change_ratio": change_ratio(other_clusters[keep], clusters[i][keep]),
            "nmi_vs": nmi(other_clusters[keep], clusters[i][keep]),
        }
    return out
