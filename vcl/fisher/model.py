"""The Fisher-vector model of a video: PCA + diagonal GMM per descriptor part, plus the
count-sketch hashes; saved as a ``vcl.fisher_model/1`` store.

Parts: ``per-type`` fits one PCA + GMM per descriptor column (traj, HOG, HOF, MBHx,
MBHy: the standard IDT practice); ``joint`` fits one over the columns concatenated
in order (426-d for IDT, as the official video_cluster code does).

A video's vector: for each part, in the fixed order of ``part_names_`` (the column
order, or the single part ``joint``), the power + L2 normalised Fisher vector of the
part's PCA-projected descriptors; the parts are concatenated and scaled by 1/√P so
the whole vector has unit norm; then, if ``sketch_dim`` > 0, count-sketched to
``sketch_dim`` dimensions with the stored hashes of each part (part p's coordinate i
uses ``<p>.sketch_hash[i]`` and ``<p>.sketch_sign[i]``).

Store layout (plain arrays, one set per part, ``<p>`` the part name):
``<p>.pca_mean`` (d_in,), ``<p>.pca_components`` (d, d_in), ``<p>.pca_explained_variance``
(d,), ``<p>.gmm_weights`` (K,), ``<p>.gmm_means`` (K, d), ``<p>.gmm_variances`` (K, d),
``<p>.sketch_hash`` (2Kd + K,) uint32, ``<p>.sketch_sign`` (2Kd + K,) int8; attrs
``parts``, ``part_columns``, ``input_dims``, ``whiten``, ``k``, ``log_likelihood``
(per part: the kept EM run's mean log-likelihood per iteration) and
``log_likelihood_runs`` (every run), ``explained_variance_ratio`` (per part).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vcl.console import log
from vcl.digest import arrays_sha256
from vcl.errors import DataError
from vcl.fisher.data import IDT_COLUMNS
from vcl.fisher.encode import fisher_dim, fisher_vectors
from vcl.fisher.gmm import DiagonalGMM, _torch_dtype
from vcl.fisher.pca import PCA
from vcl.fisher.sketch import draw_hashes

SCHEMA = "vcl.fisher_model/1"
PART_MODES = ("per-type", "joint")
PRECISIONS = ("float32", "float64")  # compute dtypes of encoding
# Descriptors per Gaussian below which the fit warns (faiss k-means' own threshold, 39)
FEW_POINTS_PER_COMPONENT = 39


class FisherModel:
    """PCA + GMM per part, then Fisher vectors and count sketch; scikit-learn style.

    ``fit(sample)`` takes column → (N, d) finite rows (rows aligned across columns);
    ``transform(videos, variant, sketch_dim)`` takes a list of column → (T_b, d) and
    returns (B, D) float32. Fitted state: ``part_names_``, ``part_columns_``,
    ``input_dims_``, ``pcas_``, ``gmms_``, ``sketch_hashes_``, ``sketch_signs_``.
    """

    def __init__(
        self,
        columns: Sequence[str] = IDT_COLUMNS,
        parts: str = "per-type",
        pca_variance: float | None = 0.9,
        pca_dim: int | None = None,
        whiten: bool = False,
        k: int = 256,
        n_iter: int = 100,
        n_init: int = 1,
        tol: float = 1e-4,
        var_floor: float = 1e-4,
        dtype: str = "float32",
        device: Any = "cpu",
        seed: int = 0,
    ):
        self.columns = columns
        self.parts = parts
        self.pca_variance = pca_variance
        self.pca_dim = pca_dim
        self.whiten = whiten
        self.k = k
        self.n_iter = n_iter
        self.n_init = n_init
        self.tol = tol
        self.var_floor = var_floor
        self.dtype = dtype
        self.device = device
        self.seed = seed

    def _layout(self) -> dict[str, list[str]]:
        if self.parts not in PART_MODES:
            raise ValueError(f"parts must be one of {PART_MODES}, got {self.parts!r}")
        if self.parts == "joint":
            return {"joint": list(self.columns)}
        return {c: [c] for c in self.columns}

    def fit(self, sample: Mapping[str, np.ndarray]) -> FisherModel:
        self.part_columns_ = self._layout()
        self.part_names_ = list(self.part_columns_)
        self.input_dims_ = {c: int(sample[c].shape[1]) for c in self.columns}
        self.pcas_: dict[str, PCA] = {}
        self.gmms_: dict[str, DiagonalGMM] = {}
        self.sketch_hashes_: dict[str, np.ndarray] = {}
        self.sketch_signs_: dict[str, np.ndarray] = {}
        keep = self.pca_dim if self.pca_dim is not None else self.pca_variance
        rows = min(len(v) for v in sample.values()) if sample else 0
        if rows < FEW_POINTS_PER_COMPONENT * self.k:
            log.warning(
                "fitting %d Gaussians on %d descriptors (%.0f each; fewer than %d): the "
                "model may be poor; raise --per-video or --sample-videos, or lower --k",
                self.k, rows, rows / self.k, FEW_POINTS_PER_COMPONENT,
            )  # fmt: skip
        for i, part in enumerate(self.part_names_):
            x = np.concatenate([sample[c] for c in self.part_columns_[part]], axis=1)
            pca = PCA(keep, whiten=self.whiten).fit(x)
            log.info(
                "pca %s: %d → %d dims (%.1f %% of the variance)",
                part,
                x.shape[1],
                pca.n_components_,
                100 * pca.explained_variance_ratio_.sum(),
            )
            gmm = DiagonalGMM(
                n_components=self.k,
                n_iter=self.n_iter,
                n_init=self.n_init,
                tol=self.tol,
                var_floor=self.var_floor,
                dtype=self.dtype,
                device=self.device,
                seed=self.seed + 1000 * i,
                name=part,
            ).fit(pca.transform(x))
            self.pcas_[part], self.gmms_[part] = pca, gmm
            n_hash = fisher_dim(self.k, pca.n_components_, "skimage")
            self.sketch_hashes_[part], self.sketch_signs_[part] = draw_hashes(
                n_hash, self.seed * 131 + i
            )
        return self

    def output_dim(self, variant: str, sketch_dim: int) -> int:
        if sketch_dim > 0:
            return sketch_dim
        return sum(fisher_dim(self.k, self.pcas_[p].n_components_, variant) for p in self.pcas_)

    def check_dims(self, dims: Mapping[str, int], model: Any, store: Any) -> None:
        """Refuse descriptors of other dimensions than the model was fit on (exit 65)."""
        for column, want in self.input_dims_.items():
            got = dims.get(column)
            if got != want:
                found = "has no such column" if got is None else f"has {got} dims"
                raise DataError(
                    f"model {model} was fit on column {column!r} of {want} dims, but store "
                    f"{store} {found}",
                    store,
                    "encode with the model fit on this kind of descriptors",
                )

    def transform(
        self,
        videos: Sequence[Mapping[str, np.ndarray]],
        variant: str = "improved",
        sketch_dim: int = 2000,
        alpha: float = 0.5,
    ) -> np.ndarray:
        """Videos (column → (T_b, d) finite rows) → (B, output_dim) float32."""
        import torch

        compute = _torch_dtype(self.dtype)
        lengths = [len(next(iter(v.values()))) if v else 0 for v in videos]
        vectors = []
        for part in self.part_names_:
            cols = self.part_columns_[part]
            rows = [np.concatenate([v[c] for c in cols], axis=1) for v in videos]
            x = torch.as_tensor(np.concatenate(rows), device=self.device).to(compute)
            pca = self.pcas_[part]
            mean, comps, scale = (
                torch.as_tensor(a, device=self.device).to(compute)
                for a in (pca.mean_, pca.components_, pca.scale_())
            )
            y = (x - mean) @ comps.T / scale  # (ΣT, d)
            gmm = self.gmms_[part]
            params = gmm._tensors(torch.float64, self.device)
            vectors.append(
                fisher_vectors(torch.split(y, lengths), *params, variant, alpha, True, self.dtype)
            )
        out = torch.cat(vectors, 1) / math.sqrt(len(vectors))
        if sketch_dim > 0:
            widths = [v.shape[1] for v in vectors]
            names = self.part_names_
            hashes = np.concatenate(
                [self.sketch_hashes_[p][:n] for p, n in zip(names, widths, strict=True)]
            )
            signs = np.concatenate(
                [self.sketch_signs_[p][:n] for p, n in zip(names, widths, strict=True)]
            )
            bucket = torch.as_tensor(hashes.astype(np.int64) % sketch_dim, device=out.device)
            sign = torch.as_tensor(signs, device=out.device).to(out.dtype)
            sketched = torch.zeros(out.shape[0], sketch_dim, dtype=out.dtype, device=out.device)
            out = sketched.index_add_(1, bucket, out * sign)
        return out.cpu().numpy().astype(np.float32)

    # -- storage -------------------------------------------------------------------

    def save(
        self, path: str | Path, params: Mapping[str, Any], seed: int, overwrite: bool = False
    ) -> Path:
        from vcl.io.store import StoreWriter

        writer = StoreWriter(path, SCHEMA, params, seed, overwrite=overwrite)
        with writer:
            for part in self.part_names_:
                pca, gmm = self.pcas_[part], self.gmms_[part]
                arrays = {
                    "pca_mean": pca.mean_,
                    "pca_components": pca.components_,
                    "pca_explained_variance": pca.explained_variance_,
                    "gmm_weights": gmm.weights_,
                    "gmm_means": gmm.means_,
                    "gmm_variances": gmm.variances_,
                    "sketch_hash": self.sketch_hashes_[part],
                    "sketch_sign": self.sketch_signs_[part],
                }
                for name, values in arrays.items():
                    writer.write_array(f"{part}.{name}", values)
            writer.set_attrs(
                parts=self.part_names_,
                part_mode=self.parts,
                part_columns=self.part_columns_,
                input_dims=self.input_dims_,
                whiten=self.whiten,
                k=self.k,
                explained_variance_ratio={
                    p: float(self.pcas_[p].explained_variance_ratio_.sum()) for p in self.pcas_
                },
                log_likelihood={p: self.gmms_[p].log_likelihood_ for p in self.gmms_},
                log_likelihood_runs={p: self.gmms_[p].log_likelihoods_ for p in self.gmms_},
            )
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: Any = "cpu", dtype: str = "float32") -> FisherModel:
        from vcl.io.store import Store

        store = Store(path, kind="fisher_model", version=1)
        attrs = store.attrs
        try:
            parts = list(attrs["parts"])
            part_columns = {p: list(c) for p, c in attrs["part_columns"].items()}
            columns = [c for p in parts for c in part_columns[p]]
            model = cls(
                columns=columns,
                parts=attrs["part_mode"],
                whiten=bool(attrs["whiten"]),
                k=int(attrs["k"]),
                dtype=dtype,
                device=device,
                seed=attrs.get("seed") or 0,
            )
            model.part_names_, model.part_columns_ = parts, part_columns
            model.input_dims_ = {c: int(d) for c, d in attrs["input_dims"].items()}
            model.pcas_, model.gmms_ = {}, {}
            model.sketch_hashes_, model.sketch_signs_ = {}, {}
            # what the vectors depend on: the settings that shape them and every array
            settings = [parts, part_columns, attrs["part_mode"], attrs["whiten"], attrs["k"]]
            hashed: list[tuple[str, np.ndarray]] = []
            for part in parts:
                names = sorted(n for n in store.arrays if n.startswith(part + "."))
                a = {n.split(".", 1)[1]: store[n][...] for n in names}
                hashed += [(name, a[name.split(".", 1)[1]]) for name in names]
                pca = PCA(whiten=model.whiten)
                pca.mean_, pca.components_ = a["pca_mean"], a["pca_components"]
                pca.explained_variance_ = a["pca_explained_variance"]
                pca.n_components_, pca.n_features_in_ = pca.components_.shape
                model.pcas_[part] = pca
                model.gmms_[part] = DiagonalGMM.from_params(
                    a["gmm_weights"], a["gmm_means"], a["gmm_variances"]
                )
                model.gmms_[part].log_likelihood_ = attrs.get("log_likelihood", {}).get(part)
                model.sketch_hashes_[part] = a["sketch_hash"]
                model.sketch_signs_[part] = a["sketch_sign"]
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"damaged fisher model ({type(exc).__name__}: {exc})", path) from None
        # A checksum rather than the model's `created` time and seed: a refit within the
        # same second, or with the same seed but other data or --iters, keeps both, and
        # hashing a model (PCA, GMM and sketch arrays: a few MB) costs milliseconds.
        model.fingerprint_ = arrays_sha256(hashed, json.dumps(settings).encode())
        model.created_ = attrs.get("created")
        return model
