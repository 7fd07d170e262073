"""Standard evaluations of frozen features: linear, SVM, few-shot and kNN probes.

- ``linear`` (ODCT Table I left, after Zhang et al. 2016): multinomial logistic
  regression on standardised features, SGD momentum 0.9, batch 64, lr 0.01 divided by
  10 every 30 epochs, 100 epochs; top-1 / top-5 accuracy.
- ``svm`` (Goyal et al. 2019, VOC07 protocol; ODCT Table I right): L2-normalised
  features, one LinearSVC (squared hinge, L2 penalty, positive-class weight 2) per
  class against the rest; its cost C is the one of ``costs`` with the best mean AP
  over 3 stratified folds (unshuffled, as scikit-learn's ``cross_val_score(cv=3)``);
  refit on all training data, scored on test. The headline ``mAP`` is the AP Goyal
  et al.'s benchmark code computes: the area under the interpolated (monotone)
  precision-recall envelope over every recall step; also the VOC07 devkit's 11-point
  interpolation (``mAP_11point``) and the exact area (``mAP_exact``, scikit-learn's
  ``average_precision_score``). liblinear's coordinate order is drawn from ``seed``, so
  runs repeat (unconverged fits at large C depend on it). Multi-label targets: ``a|b``.
  Per-id ignored classes (VOC07's "difficult" images, ``0`` in ImageSets/Main: every
  instance of the class in them is difficult): for class c, the rows that ignore c are
  left out of c's test APs, as VOC's devkit and Goyal et al.'s ``test_svm.py`` do, and
  are negatives of c in its training and cross-validation, as their
  ``train_svm_kfold.py`` trains them (its targets keep "ignore" as a third value, and
  training turns every value but "present" into −1).
- ``fewshot`` (Tokmakov et al. Table 2): n samples per class drawn (seeded, class
  balanced) from train; an L2-regularised multinomial logistic regression (L-BFGS,
  full batch: with 20 samples SGD epochs would be single steps) on L2-normalised
  features; test accuracy mean ± std over the draws.
- ``knn`` (Wu et al. 2018, the memory-bank papers): cosine similarity of
  L2-normalised features, the k = 200 nearest training samples vote with weight
  exp(s/τ), τ = 0.07; plus plain majority voting among the same k.

Labels always travel with ids (``join_labels``), never by row order.
"""

from __future__ import annotations

import json
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vcl.console import log
from vcl.errors import DataError, MissingInputError, UsageError, first_ids
from vcl.io.manifest import iter_json_lines

DEFAULT_COSTS = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
# Goyal et al.'s VOC07 grid: their scripts' --costs_list, to which their parse_cost_list
# appends 0.5^4 ... 0.5^19; kept in their order, since ties go to the first best cost
GOYAL_COSTS = (
    1e-7,
    1e-6,
    1e-5,
    1e-4,
    1e-3,
    1e-2,
    0.1,
    1.0,
    10.0,
    100.0,
    *(0.5**k for k in range(4, 20)),
)
LABEL_SEPARATOR = "|"


# ---------------------------------------------------------------- data


@dataclass
class ProbeData:
    """Train/test arrays of one layer; labels as strings (``a|b`` for multi-label)."""

    layer: str
    x_train: np.ndarray  # (N, D) float32
    y_train: np.ndarray  # (N,) str
    x_test: np.ndarray  # (M, D) float32
    y_test: np.ndarray  # (M,) str
    inputs: dict[str, Any] = field(default_factory=dict)
    ignore_train: np.ndarray | None = None  # (N,) str: classes to ignore, "a|b"; "" none
    ignore_test: np.ndarray | None = None  # (M,) str


def read_labels_file(path: str | Path, *fields: str) -> dict[str, dict[str, str]]:
    """``{field: {id: value}}`` from any JSONL with ``id`` and the fields (a line without
    a field is skipped for it); read once, so ``-`` (stdin) serves every field. An id on
    two lines is an error: which line's label or split would hold is a guess (a train and
    a test manifest concatenated that share an id)."""
    path = Path(path)
    if str(path) != "-" and not path.exists():  # "-": stdin
        raise MissingInputError("no such labels file", path)
    out: dict[str, dict[str, str]] = {name: {} for name in fields}
    seen: dict[str, int] = {}
    for lineno, obj in iter_json_lines(path):
        if "id" not in obj:
            raise DataError(f"line {lineno}: a JSON object with an 'id' is needed", path)
        item = str(obj["id"])
        if item in seen:
            raise DataError(
                f"line {lineno}: duplicate id {item!r} (first on line {seen[item]})",
                path,
                "ids must be unique",
            )
        seen[item] = lineno
        for name in fields:
            value = obj.get(name)
            if value is None or value == "":
                continue
            if isinstance(value, list):
                value = LABEL_SEPARATOR.join(map(str, value))
            out[name][str(obj["id"])] = str(value)
    return out


def join_labels(
    ids: np.ndarray,
    labels: dict[str, str],
    what: str,
    source: str,
    unlabelled_ok: Container[str] = (),
) -> np.ndarray:
    """Labels of ``ids`` by id; every id must have one (count + first few otherwise),
    but for the ids of ``unlabelled_ok``, which get ``""`` (no class)."""
    values = np.array([labels.get(str(i), "") for i in ids], dtype=object)
    missing = [
        str(i) for i, v in zip(ids, values, strict=True) if v == "" and str(i) not in unlabelled_ok
    ]
    if missing:
        first = ", ".join(repr(m) for m in missing[:3])
        raise DataError(
            f"{len(missing)} of {len(ids)} {what} ids have no label (first: {first})",
            source,
            "give labels for every id (--labels FILE)",
        )
    return values.astype(str)


def _store_labels(fs: Any) -> dict[str, str]:
    if fs.labels is None:
        return {}
    return {str(i): str(v) for i, v in zip(fs.ids, fs.labels, strict=True) if str(v) != ""}


def check_rows(features: np.ndarray, ids: np.ndarray, what: str, source: str) -> None:
    """Refuse empty sets and NaN/inf rows: a probe would score them as noise, silently."""
    if len(features) == 0:
        raise DataError(f"holds no {what} samples", source, "nothing to probe")
    bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if len(bad):
        raise DataError(
            f"{len(bad)} of {len(features)} {what} rows hold NaN or inf "
            f"(first ids: {first_ids(ids[bad])})",
            source,
            "drop or fix those rows",
        )


def load_probe_data(
    train: str | Path | list[str | Path],
    test: str | Path | list[str | Path] | None,
    layer: str | None,
    labels_file: str | Path | None = None,
    split_field: str | None = None,
    train_split: str = "train",
    test_split: str = "test",
    train_ids: str | Path | None = None,
    test_ids: str | Path | None = None,
    ignore_field: str | None = None,
) -> ProbeData:
    """Read one layer of train/test stores (or one store split by ``split_field``).

    ``train`` and ``test`` may each be several stores (shards), read as their merge;
    ``train_ids`` / ``test_ids`` name the rows of ``.npy`` arrays (one id per line).
    ``ignore_field`` names a field of ``labels_file`` listing, per id, the classes the
    svm probe leaves out for that id (``ignore_train`` / ``ignore_test``); an id that
    lists some may have no label (every instance in the image is ignored).
    """
    from vcl.io.features import read_feature_set

    def name(x: Any) -> str:
        return ", ".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x)

    if ignore_field is not None and ignore_field in ("label", split_field):
        raise UsageError(f"the ignore field {ignore_field!r} is also the label or split field")
    fields = ["label"] + [f for f in (split_field, ignore_field) if f is not None]
    from_file = read_labels_file(labels_file, *fields) if labels_file is not None else {}
    file_labels = from_file.get("label", {})
    ignored = from_file.get(ignore_field, {}) if ignore_field is not None else {}

    def ignore_of(ids: np.ndarray) -> np.ndarray:
        return np.array([ignored.get(str(i), "") for i in ids], dtype=object).astype(str)

    tr = read_feature_set(train, ids_file=train_ids, layer=layer)
    layer_name = str((tr.attrs or {}).get("layer", ""))
    if test is None:
        if split_field is None:
            raise UsageError("no test set", "--test", "give --test STORE or --split-field")
        if labels_file is None:
            raise UsageError("--split-field needs --labels FILE (a manifest with the split)")
        splits = from_file[split_field]
        split = np.array([splits.get(str(i), "") for i in tr.ids])
        tr_mask, te_mask = split == train_split, split == test_split
        if not tr_mask.any() or not te_mask.any():
            raise DataError(
                f"no ids with {split_field} = {train_split!r} and {test_split!r}", labels_file
            )
        labels = {**_store_labels(tr), **file_labels}
        y = join_labels(
            tr.ids[tr_mask | te_mask],
            labels,
            "train/test",
            str(labels_file or name(train)),
            ignored,
        )
        keep = np.flatnonzero(tr_mask | te_mask)
        is_train = tr_mask[keep]
        ignore = ignore_of(tr.ids[keep])
        check_ignored(tr.ids[keep], y, ignore, str(labels_file))
        check_rows(tr.features[keep[is_train]], tr.ids[keep[is_train]], "train", name(train))
        check_rows(tr.features[keep[~is_train]], tr.ids[keep[~is_train]], "test", name(train))
        return ProbeData(
            layer_name,
            tr.features[keep[is_train]],
            y[is_train],
            tr.features[keep[~is_train]],
            y[~is_train],
            {
                "train": name(train),
                "test": f"{name(train)} ({split_field})",
                "labels": str(labels_file),
            },
            ignore[is_train],
            ignore[~is_train],
        )
    te = read_feature_set(test, ids_file=test_ids, layer=layer)
    test_layer = str((te.attrs or {}).get("layer", ""))
    if test_layer != layer_name:
        raise DataError(
            f"layer {test_layer!r} differs from the train store's {layer_name!r}", name(test)
        )
    if tr.features.shape[1] != te.features.shape[1]:
        raise DataError(
            f"features have {te.features.shape[1]} dimensions, the train store's "
            f"{tr.features.shape[1]}",
            name(test),
            "embed train and test with the same model and layer",
        )
    check_rows(tr.features, tr.ids, "train", name(train))
    check_rows(te.features, te.ids, "test", name(test))
    _check_shared_ids(tr, te, name(train), name(test))
    y_tr = join_labels(
        tr.ids,
        {**_store_labels(tr), **file_labels},
        "train",
        str(labels_file or name(train)),
        ignored,
    )
    y_te = join_labels(
        te.ids,
        {**_store_labels(te), **file_labels},
        "test",
        str(labels_file or name(test)),
        ignored,
    )
    ignore_tr, ignore_te = ignore_of(tr.ids), ignore_of(te.ids)
    check_ignored(tr.ids, y_tr, ignore_tr, str(labels_file))
    check_ignored(te.ids, y_te, ignore_te, str(labels_file))
    return ProbeData(
        layer_name,
        tr.features,
        y_tr,
        te.features,
        y_te,
        {
            "train": name(train),
            "test": name(test),
            "labels": None if labels_file is None else str(labels_file),
        },
        ignore_tr,
        ignore_te,
    )


def check_ignored(ids: np.ndarray, y: np.ndarray, ignore: np.ndarray, source: str) -> None:
    """Refuse an id whose ignored classes include one of its labels: present and
    ignored at once is ambiguous (a VOC07 class file gives each image one of 1, 0, -1)."""
    for i, labels, skip in zip(ids, y, ignore, strict=True):
        if skip == "":
            continue
        both = set(skip.split(LABEL_SEPARATOR)) & set(str(labels).split(LABEL_SEPARATOR))
        if both - {""}:
            raise DataError(
                f"id {str(i)!r} has {first_ids(sorted(both - {''}))} both as a label and ignored",
                source,
                "a class is present in an image or ignored there, not both",
            )


def _check_shared_ids(tr: Any, te: Any, train_name: str, test_name: str) -> None:
    """Ids in both sets: an error for two arrays numbered by row (labels join by id, so
    row i of both would get one label), else a warning (the same samples in both?)."""
    shared = np.intersect1d(tr.ids, te.ids)
    if not len(shared):
        return
    if (tr.attrs or {}).get("row_number_ids") and (te.attrs or {}).get("row_number_ids"):
        raise UsageError(
            f"{train_name} and {test_name} are both numbered by row, so their ids collide and "
            "labels joined by id would be shared",
            None,
            "give --train-ids FILE and --test-ids FILE (one id per line, row order)",
        )
    log.warning(
        "%d of %d test ids are also train ids (first: %s): the same samples in both sets?",
        len(shared),
        len(te.ids),
        first_ids(shared),
    )


def encode_labels(
    y_train: np.ndarray, y_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Single-label classes as ints (test classes unseen in train get -1: always wrong)."""
    for y in (y_train, y_test):
        if any(LABEL_SEPARATOR in str(v) for v in y):
            raise DataError("multi-label targets ('a|b') are only supported by vcl probe svm", None)
    classes = sorted(set(y_train.tolist()))
    if len(classes) < 2:
        raise DataError(
            f"the training labels hold one class ({first_ids(classes)}): every probe would "
            "score 1.0",
            None,
            "a probe needs two classes or more",
        )
    index = {c: i for i, c in enumerate(classes)}
    unseen = sum(1 for v in y_test if v not in index)
    if unseen:
        log.warning("%d test samples have classes absent from train (counted wrong)", unseen)
    return (
        np.array([index[v] for v in y_train], np.int64),
        np.array([index.get(v, -1) for v in y_test], np.int64),
        classes,
    )


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def topk_accuracy(scores: np.ndarray, y: np.ndarray, k: int) -> float | None:
    """Fraction of rows whose true class is among the k best scores (None if k > C)."""
    if k > scores.shape[1] or len(y) == 0:
        return None
    if k == 1:  # ties: the smallest class index, as argmax
        return float((scores.argmax(1) == y).mean())
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(1).mean())


# ---------------------------------------------------------------- linear


@dataclass(frozen=True)
class LinearParams:
    epochs: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 64
    step_epochs: int = 30  # lr ×gamma every step_epochs
    gamma: float = 0.1
    weight_decay: float = 0.0


def linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    params: LinearParams = LinearParams(),
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Multinomial logistic regression by SGD on standardised features (Zhang et al.)."""
    import torch

    from vcl.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cpu":
        # batches of 64 are too small for intra-op threads: one thread is ~3 ms a step at
        # 64×9216×20, two threads on a loaded 2-core machine were 65 ms a step.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _linear_probe(x_train, y_train, x_test, y_test, n_classes, params, dev, seed)
        finally:
            torch.set_num_threads(threads)
    return _linear_probe(x_train, y_train, x_test, y_test, n_classes, params, dev, seed)


STATS_BLOCK = 1 << 18  # elements per block of rows read for statistics / standardising


def _row_blocks(x: np.ndarray) -> list[slice]:
    """Slices of consecutive rows, about STATS_BLOCK elements each."""
    step = max(1, STATS_BLOCK // max(1, x.shape[1]))
    return [slice(i, i + step) for i in range(0, len(x), step)]


def column_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation (population) of an N×D matrix, as
    float32, accumulated in float64 a block of rows at a time (two passes: the sum,
    then the squared deviations from the mean), so no N×D temporary is made.

    A column constant in training (std < 1e-6: a ReLU channel that never fires) gets
    std = inf, so it standardises to 0 everywhere: the probe can learn nothing from it,
    and a tiny std would blow its test activations up into random logits."""
    total = np.zeros(x.shape[1], np.float64)
    for rows in _row_blocks(x):
        total += x[rows].sum(0, dtype=np.float64)
    mean = total / len(x)
    squares = np.zeros(x.shape[1], np.float64)
    for rows in _row_blocks(x):
        dev = x[rows] - mean
        squares += np.einsum("ij,ij->j", dev, dev)
    std = np.sqrt(squares / len(x))
    std[std < 1e-6] = np.inf
    return mean.astype(np.float32), std.astype(np.float32)


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` as one new float32 N×D array, written a block of rows at a
    time (float32 arithmetic, as before)."""
    out = np.empty(x.shape, np.float32)
    for rows in _row_blocks(x):
        block = x[rows] - mean
        block /= std
        out[rows] = block
    return out


def _linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    params: LinearParams,
    dev: Any,
    seed: int,
) -> dict[str, Any]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    mean, std = column_stats(x_train)  # standardise with train statistics
    xt = torch.from_numpy(standardise(x_train, mean, std)).to(dev)
    yt = torch.from_numpy(y_train).to(dev)
    torch.manual_seed(seed)
    model = torch.nn.Linear(xt.shape[1], n_classes).to(dev)
    opt = torch.optim.SGD(
        model.parameters(), lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, params.step_epochs, params.gamma)
    n = len(xt)
    loss = torch.zeros(())
    for _ in range(params.epochs):
        order = torch.randperm(n, generator=gen).to(dev)
        for i in range(0, n, params.batch_size):
            idx = order[i : i + params.batch_size]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        xe = torch.from_numpy(standardise(x_test, mean, std)).to(dev)
        scores = model(xe).float().cpu().numpy()
    return {
        "top1": topk_accuracy(scores, y_test, 1),
        "top5": topk_accuracy(scores, y_test, 5),
        "final_train_loss": float(loss.detach().cpu()),
    }


# ---------------------------------------------------------------- AP


def _ranked_hits(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hit at each rank, precision at each rank), best score first (ties: sample order)."""
    hits = positives[np.argsort(-scores, kind="stable")].astype(bool)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return hits, precision


def interpolated_ap(scores: np.ndarray, positives: np.ndarray) -> float:
    """All-point interpolated AP (Goyal et al.'s benchmark, VOC 2010+): the mean over the
    positives of the best precision at their rank or any later one."""
    hits, precision = _ranked_hits(scores, positives)
    if not hits.any():
        return float("nan")
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(envelope[hits].mean())


def voc07_ap(scores: np.ndarray, positives: np.ndarray) -> float:
    """VOC07 11-point interpolated AP: mean over t ∈ {0, 0.1, ..., 1} of the best
    precision at recall ≥ t (0 where recall never reaches t)."""
    hits, precision = _ranked_hits(scores, positives)
    if not hits.any():
        return float("nan")
    recall = np.cumsum(hits) / hits.sum()
    points = [
        precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.linspace(0, 1, 11)
    ]
    return float(np.mean(points))


def exact_ap(scores: np.ndarray, positives: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    if positives.sum() == 0:
        return float("nan")
    return float(average_precision_score(positives, scores))


# ---------------------------------------------------------------- svm


def multilabel_targets(
    y_train: np.ndarray, y_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N, C) and (M, C) boolean matrices over the classes seen in train."""
    classes = sorted(set().union(*(str(v).split(LABEL_SEPARATOR) for v in y_train)) - {""})
    return class_matrix(y_train, classes), class_matrix(y_test, classes), classes


def class_matrix(values: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """(N, C) bool: row i holds class c when c is one of the ``a|b`` names of values[i]
    (names outside ``classes`` are dropped; ``""`` holds none).

    Each distinct value is split once (a data set has few label combinations), then
    rows take their value's row of that table.
    """
    text = np.array([str(v) for v in values], dtype=object)  # as str() reads each
    distinct, inverse = np.unique(text, return_inverse=True)
    column = {c: j for j, c in enumerate(classes)}
    table = np.zeros((len(distinct), len(classes)), bool)
    for k, value in enumerate(distinct):
        hits = [column[n] for n in value.split(LABEL_SEPARATOR) if n in column]
        table[k, hits] = True
    return table[inverse.reshape(-1)]


def _svm(cost: float, max_iter: int, seed: int) -> Any:
    from sklearn.svm import LinearSVC

    return LinearSVC(
        C=cost,
        class_weight={1: 2.0, 0: 1.0},
        penalty="l2",
        loss="squared_hinge",
        dual=True,
        tol=1e-4,
        max_iter=max_iter,
        intercept_scaling=1.0,
        random_state=seed,
    )


SvmTask = tuple[
    np.ndarray,  # x_train (N, D), L2-normalised
    np.ndarray,  # targets (N,) bool
    np.ndarray,  # x_test (M, D)
    np.ndarray,  # targets (M,) bool
    Sequence[float],  # costs
    int,  # folds
    int,  # max_iter
    int,  # seed
    np.ndarray | None,  # (M,) bool: test rows kept for this class (None: all)
]


def _svm_class(args: SvmTask) -> dict[str, Any]:
    """One class: cost by 3-fold CV on AP, refit, test APs; the test rows that ignore
    the class are left out of its APs (in training they are negatives)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    x_tr, t_tr, x_te, t_te, costs, folds, max_iter, seed, keep_te = args
    if keep_te is not None:
        x_te, t_te = x_te[keep_te], t_te[keep_te]
    y = t_tr.astype(int)
    cv_ap = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        n_folds = min(folds, int(y.sum()), int(len(y) - y.sum()))
        for cost in costs:
            if n_folds < 2:
                cv_ap.append(float("nan"))
                continue
            aps = []
            for a, b in StratifiedKFold(n_folds).split(x_tr, y):
                clf = _svm(cost, max_iter, seed).fit(x_tr[a], y[a])
                aps.append(exact_ap(clf.decision_function(x_tr[b]), y[b].astype(bool)))
            cv_ap.append(float(np.mean(aps)))
        valid = np.nan_to_num(np.array(cv_ap), nan=-1.0)
        best = int(np.argmax(valid))  # ties: the first in the grid's order
        clf = _svm(costs[best], max_iter, seed).fit(x_tr, y)
    # every test row may ignore the class (VOC07: all its test instances difficult)
    scores = clf.decision_function(x_te) if len(x_te) else np.zeros(0)
    return {
        "cost": float(costs[best]),
        "cv_folds": n_folds if n_folds >= 2 else 0,  # 0: too few positives or negatives to validate
        "cv_ap": cv_ap,
        "ap": interpolated_ap(scores, t_te),
        "ap_11point": voc07_ap(scores, t_te),
        "ap_exact": exact_ap(scores, t_te),
    }


def svm_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    costs: Sequence[float] = DEFAULT_COSTS,
    folds: int = 3,
    max_iter: int = 2000,
    workers: int = 1,
    seed: int = 0,
    ignore_train: np.ndarray | None = None,
    ignore_test: np.ndarray | None = None,
) -> dict[str, Any]:
    """Goyal et al.'s VOC07 SVM protocol; labels ``a|b`` for several classes.

    ``ignore_train`` (N,) / ``ignore_test`` (M,): per row, the ``a|b`` classes that
    row is difficult for (VOC07); ``""`` or None: none. A test row is left out of the
    APs of its ignored classes; a training row stays a negative of them (counted only).
    """
    from vcl.parallel import parallel_map

    t_tr, t_te, classes = multilabel_targets(y_train, y_test)
    if len(classes) < 1 or len(y_train) < 2:
        raise DataError("the svm probe needs at least one class and two training samples")
    none_tr, none_te = np.full(len(y_train), ""), np.full(len(y_test), "")
    i_tr = class_matrix(none_tr if ignore_train is None else ignore_train, classes)  # (N, C)
    i_te = class_matrix(none_te if ignore_test is None else ignore_test, classes)  # (M, C)
    everywhere = [c for c, on in zip(classes, t_tr.all(axis=0), strict=True) if on]
    if everywhere:
        raise DataError(
            f"{'classes' if len(everywhere) > 1 else 'class'} {first_ids(everywhere)} on "
            "every training sample: a one-vs-rest SVM needs negatives",
            None,
            "train on samples of two classes or more",
        )
    x_tr, x_te = l2_normalise(x_train), l2_normalise(x_test)
    tasks = [
        (
            x_tr,
            t_tr[:, c],
            x_te,
            t_te[:, c],
            tuple(costs),
            folds,
            max_iter,
            seed,
            ~i_te[:, c] if i_te[:, c].any() else None,
        )
        for c in range(len(classes))
    ]
    per_class = dict(zip(classes, parallel_map(_svm_class, tasks, workers), strict=True))
    for c, r in enumerate(per_class.values()):
        r["ignored_train_negatives"] = int(i_tr[:, c].sum())
        r["ignored_test"] = int(i_te[:, c].sum())
    aps = np.array([r["ap"] for r in per_class.values()])
    eleven = np.array([r["ap_11point"] for r in per_class.values()])
    exact = np.array([r["ap_exact"] for r in per_class.values()])
    no_pos = [c for c, r in per_class.items() if np.isnan(r["ap"])]
    if no_pos:
        log.warning(
            "%d classes have no positive test sample (left out of the mAP): %s",
            len(no_pos),
            first_ids(no_pos),
        )
    unvalidated = [c for c, r in per_class.items() if r["cv_folds"] == 0]
    if unvalidated:
        log.warning(
            "%d classes have fewer than 2 training positives or negatives, so their cost "
            "is the smallest, not cross-validated: %s",
            len(unvalidated),
            first_ids(unvalidated),
        )
    fewer = [c for c, r in per_class.items() if 0 < r["cv_folds"] < folds]
    if fewer:
        log.warning(
            "%d classes have fewer than %d training positives or negatives, so their cost "
            "is cross-validated on fewer folds: %s",
            len(fewer),
            folds,
            first_ids(fewer),
        )
    return {
        "mAP": float(np.nanmean(aps)) if np.isfinite(aps).any() else None,
        "mAP_11point": float(np.nanmean(eleven)) if np.isfinite(eleven).any() else None,
        "mAP_exact": float(np.nanmean(exact)) if np.isfinite(exact).any() else None,
        "ap_headline": "interpolated_all_points",
        # (row, class) pairs: trained as negatives / left out of the test APs, summed
        # over classes (per class in per_class)
        "ignored_train_negatives": int(i_tr.sum()),
        "ignored_test": int(i_te.sum()),
        "per_class": {
            c: {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for c, r in per_class.items()
        },
    }


# ---------------------------------------------------------------- few-shot


def fewshot_draw(y: np.ndarray, shots: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``shots`` samples of every class 0..n_classes-1, drawn without replacement."""
    out = []
    for c in range(n_classes):
        members = np.flatnonzero(y == c)
        if len(members) < shots:
            raise DataError(
                f"class {c} has {len(members)} training samples, fewer than {shots} shots"
            )
        out.append(rng.choice(members, shots, replace=False))
    return np.sort(np.concatenate(out))


def fewshot_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: Sequence[str],
    shots: Sequence[int] = (1, 5, 10, 20),
    repeats: int = 10,
    c_reg: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean ± std test accuracy of logistic regression on n-shot draws."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from vcl.seed import rng as make_rng

    counts = np.bincount(y_train, minlength=len(classes))
    for n in shots:
        if counts.min() < n:
            c = int(np.argmin(counts))
            raise DataError(
                f"class {classes[c]!r} has {counts[c]} training samples, fewer than {n} shots",
                None,
                "lower --shots",
            )
    x_tr, x_te = l2_normalise(x_train), l2_normalise(x_test)
    results = {}
    for n in shots:
        accs = []
        for r in range(repeats):
            idx = fewshot_draw(y_train, n, len(classes), make_rng(seed, n, r))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf = LogisticRegression(C=c_reg, max_iter=1000).fit(x_tr[idx], y_train[idx])
            pred = clf.predict(x_te)
            accs.append(float((pred == y_test).mean()))
        results[str(n)] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "runs": accs}
    return {"shots": results}


# ---------------------------------------------------------------- knn


def knn_scores(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    k: int = 200,
    temperature: float = 0.07,
) -> tuple[np.ndarray, np.ndarray]:
    """(weighted votes, majority votes), each (M, C): cosine neighbours by faiss; weight
    exp(s/τ) (Wu et al. 2018, eq. 8)."""
    import faiss

    x_tr, x_te = l2_normalise(x_train), l2_normalise(x_test)
    k = min(k, len(x_tr))
    index = faiss.IndexFlatIP(x_tr.shape[1])
    index.add(x_tr)
    sims, nbrs = index.search(x_te, k)  # (M, k) best first
    labels = y_train[nbrs]  # (M, k)
    weighted = np.zeros((len(x_te), n_classes), np.float64)
    majority = np.zeros((len(x_te), n_classes), np.float64)
    rows = np.repeat(np.arange(len(x_te)), k)
    np.add.at(
        weighted, (rows, labels.ravel()), np.exp(sims.ravel().astype(np.float64) / temperature)
    )
    np.add.at(majority, (rows, labels.ravel()), 1.0)
    return weighted, majority


def knn_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    k: int = 200,
    temperature: float = 0.07,
) -> dict[str, Any]:
    weighted, majority = knn_scores(x_train, y_train, x_test, n_classes, k, temperature)
    return {
        "top1": topk_accuracy(weighted, y_test, 1),
        "top5": topk_accuracy(weighted, y_test, 5),
        "majority_top1": topk_accuracy(majority, y_test, 1),
        "k": int(min(k, len(x_train))),
    }


# Headline number of each probe in comparison tables (few-shot: every "<n>-shot" key).
HEADLINE = {"linear": ["top1"], "knn": ["top1"], "svm": ["mAP"]}


def probe_table(reports: Sequence[Path]) -> tuple[list[str], list[dict[str, Any]]]:
    """``(columns, rows)`` as ``vcl probe compare`` lays them out.

    Each report is a ``vcl probe`` report (JSON, or JSONL from ``--jsonl``) or the
    JSON that ``vcl probe compare`` prints (``{"columns", "rows"}``). Row values are
    fractions keyed by layer: linear/knn top-1, svm mAP, few-shot mean per shot count.
    """
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    for path in map(Path, reports):
        if not path.exists():
            raise MissingInputError("no such report", path)
        try:
            lines = [
                json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()
            ]
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not a JSON report ({exc})", path) from None
        if len(lines) == 1 and isinstance(lines[0], dict) and {"columns", "rows"} <= set(lines[0]):
            columns += [c for c in lines[0]["columns"] if c not in columns]
            rows += lines[0]["rows"]
            continue
        layer_reports = []
        for obj in lines:
            if not isinstance(obj, dict) or "method" not in obj:
                raise DataError("not a vcl probe report (no 'method')", path)
            if "layers" in obj:
                layer_reports += [{"method": obj["method"], **r} for r in obj["layers"]]
            else:
                layer_reports.append(obj)
        by_row: dict[str, dict[str, Any]] = {}
        for r in layer_reports:
            layer = r.get("layer") or "features"
            if layer not in columns:
                columns.append(layer)
            metrics = r.get("metrics", {})
            keys = HEADLINE.get(r["method"]) or [k for k in metrics if k.endswith("-shot")]
            for key in keys:
                name = f"{r['method']} {key}" + (f" ({path.name})" if len(reports) > 1 else "")
                row = by_row.setdefault(name, {"probe": name, "source": str(path), "values": {}})
                row["values"][layer] = metrics.get(key)
        rows.extend(by_row.values())
    if not rows:
        raise DataError("no probe results in the reports", reports[0] if reports else None)
    return columns, rows
