"""``vcl pretrain``: one training core (:mod:`vcl.pretrain.loop`) and pluggable methods.

``METHODS`` maps a ``--method`` name to the class implementing it (imported lazily, so
listing the names does not import torch). A method class provides ``open_data``,
``check``, ``build_model``, ``param_groups``, ``batches``, ``init_state``,
``train_step``, ``after_step``, ``epoch_metrics``, ``state_dict`` / ``load_state_dict``
and ``labels`` (see :class:`vcl.pretrain.odc.ODCMethod`); the loop does the rest (run
directory, checkpoints, resume, devices, mixed precision, DDP, progress).
"""

from __future__ import annotations

import importlib
from typing import Any

METHODS: dict[str, str] = {
    "odct": "vcl.pretrain.odc:ODCT",
    "odc": "vcl.pretrain.odc:ODCMethod",
    "odc-trackinit": "vcl.pretrain.odc:ODCTrackInit",
    "triplet": "vcl.pretrain.triplet:TripletMethod",
    "moving-clusters": "vcl.pretrain.moving:MovingClusters",
    "video-ir": "vcl.pretrain.instance:VideoIR",
    "video-la": "vcl.pretrain.instance:VideoLA",
    "video-la-idt": "vcl.pretrain.instance:VideoLAIDT",
    "slic": "vcl.pretrain.slic:SLICMethod",
}


def method_class(name: str) -> Any:
    from vcl.errors import UsageError

    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}", "--method", f"use {', '.join(METHODS)}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def check_resumed_size(saved: int, n: int, path: Any, items: str, source: str) -> None:
    """A checkpoint's per-sample state (memory, clusters, pair count) was made for one
    input; resuming on another of a different size would misalign every index."""
    if saved != n:
        from vcl.errors import DataError

        raise DataError(
            f"the checkpoint covers {saved} {items}, the input holds {n}",
            path,
            f"resume with the {source} the run was started on",
        )


def inputs_fingerprint(keys: Any) -> dict[str, Any]:
    """What a checkpoint's per-sample state is aligned to: the count, and digests of the
    samples' keys (video, track, frame of a crop; id of a video) in order and as a set."""
    import hashlib

    def digest(items: Any) -> str:
        return hashlib.sha256("\n".join(map(str, items)).encode()).hexdigest()

    return {"n": len(keys), "ordered": digest(keys), "set": digest(sorted(keys))}


def check_resumed_inputs(saved: dict[str, Any], now: dict[str, Any], path: Any, given: Any) -> None:
    """Resuming on other samples, or the same ones in another order (shards given in
    another order), would pair every sample with another one's memory and labels.

    ``given``: the inputs as the run was started with them (its config.json)."""
    if saved["ordered"] == now["ordered"]:
        return
    from vcl.errors import DataError

    if not isinstance(given, list):
        given = [given]
    started = " ".join(map(str, given))
    if saved["set"] == now["set"]:
        raise DataError(
            "the checkpoint was made on the same samples in another order",
            path,
            f"give the inputs in the order the run was started with: {started}",
        )
    raise DataError(
        f"the checkpoint was made on other samples ({saved['n']}) than the {now['n']} given",
        path,
        f"resume with the inputs the run was started on: {started}",
    )
