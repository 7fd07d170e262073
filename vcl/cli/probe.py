"""vcl probe: linear, SVM, few-shot and kNN evaluations of frozen features."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from vcl.cli.common import (
    Device,
    Seed,
    command_group,
    parse_number_list,
    report_json,
    vcl_command,
)

app = command_group(
    "Probe frozen features: linear, SVM, few-shot, kNN.\n\n"
    "`vcl probe linear|svm|fewshot|knn --train TRAIN.zarr --test TEST.zarr` trains on the "
    "train features and reports on the test ones, for every layer of the stores (or the "
    "--layer ones); `vcl probe compare REPORT...` puts several reports side by side. All "
    "take --quiet, --verbose and --config FILE.toml.",
    default=None,
)

Train = Annotated[
    list[Path],
    typer.Option(
        "--train",
        help="vcl.features store (or .npy) to train on; with --split-field, the one store "
        "holding train and test (repeat for the shards of one run: read as their merge).",
        show_default=False,
    ),
]
Test = Annotated[
    list[Path] | None,
    typer.Option(
        "--test",
        help="vcl.features store (or .npy) to evaluate on (repeatable, as --train).",
    ),
]
Layer = Annotated[
    list[str] | None,
    typer.Option(
        "--layer",
        metavar="LAYER",
        help="Layer to probe (repeatable; default: every layer of the train store).",
    ),
]
Labels = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        metavar="FILE",
        help="JSONL with id and label on each line (joined by id; overrides store labels; "
        "several labels as a list or 'a|b'); with --split-field also the split.",
    ),
]
SplitField = Annotated[
    str | None,
    typer.Option(
        "--split-field",
        help="Field of --labels naming each id's split: train and test come from --train.",
    ),
]
TrainSplit = Annotated[
    str, typer.Option("--train-split", help="Split value of training ids (--split-field).")
]
TestSplit = Annotated[
    str, typer.Option("--test-split", help="Split value of test ids (--split-field).")
]
TrainIds = Annotated[
    Path | None,
    typer.Option(
        "--train-ids",
        metavar="FILE",
        help="For a train .npy array: one id per line, in row order (else ids are row numbers).",
    ),
]
TestIds = Annotated[
    Path | None,
    typer.Option(
        "--test-ids",
        metavar="FILE",
        help="For a test .npy array: one id per line, in row order (else ids are row numbers).",
    ),
]
# VOC07's ImageSets/Main mark an image 0 for a class whose instances there are all
# difficult; vcl images --voc writes those classes under this field
DEFAULT_IGNORE_FIELD = "difficult"
Jsonl = Annotated[
    bool, typer.Option("--jsonl", help="One JSON line per layer instead of one JSON report.")
]


def _layers_of(path: Path, asked: list[str] | None) -> list[str | None]:
    if asked:
        return list(asked)
    if path.suffix == ".npy":
        return [None]
    from vcl.io.features import KIND, store_layers
    from vcl.io.store import Store

    store = Store(path, kind=KIND, version=1)
    found = store_layers(store.columns)
    return [layer or None for layer in found] or [None]


def _table(method: str, rows: list[dict[str, Any]], keys: list[str]) -> None:
    from rich.table import Table

    from vcl.console import QUIET, err_console, verbosity

    if verbosity() == QUIET:
        return
    table = Table(title=f"vcl probe {method}")
    table.add_column("layer")
    for k in keys:
        table.add_column(k, justify="right")
    for row in rows:
        values = []
        for k in keys:
            v = row["metrics"].get(k) if k in row["metrics"] else row.get(k)
            values.append(
                "–" if v is None else f"{100 * v:.2f}" if isinstance(v, float) else str(v)
            )
        table.add_row(row["layer"] or "features", *values)
    err_console.print(table)


def _probe(
    method: str,
    fn: Callable[[Any], dict[str, Any]],
    parameters: dict[str, Any],
    table_keys: list[str],
    train: list[Path],
    test: list[Path] | None,
    layer: list[str] | None,
    labels: Path | None,
    split_field: str | None,
    train_split: str,
    test_split: str,
    jsonl: bool,
    ids: tuple[Path | None, Path | None] = (None, None),
    ignore_field: str | None = None,
) -> None:
    from vcl.console import log
    from vcl.errors import naming
    from vcl.probe import load_probe_data

    reports = []
    inputs: dict[str, Any] = {}
    tr = train[0] if len(train) == 1 else train
    te = None if not test else test[0] if len(test) == 1 else test
    for name in _layers_of(train[0], layer):
        data = load_probe_data(
            tr,
            te,
            name,
            labels,
            split_field,
            train_split,
            test_split,
            ids[0],
            ids[1],
            ignore_field,
        )
        log.info(
            "%s probe of layer %s: %d train, %d test samples, %d dims",
            method,
            data.layer or "features",
            len(data.x_train),
            len(data.x_test),
            data.x_train.shape[1],
        )
        # the labels' problem (one class, too few shots): name them
        with naming(labels if labels is not None else data.inputs["train"]):
            metrics = fn(data)
        inputs = data.inputs
        reports.append(
            {
                "method": method,
                "layer": data.layer,
                "metrics": metrics,
                "train_samples": len(data.x_train),
                "test_samples": len(data.x_test),
                "dim": int(data.x_train.shape[1]),
                "parameters": parameters,
                "inputs": data.inputs,
            }
        )
    _table(method, reports, table_keys)
    if jsonl:
        for r in reports:
            typer.echo(report_json(r))
    else:
        layers = [
            {k: v for k, v in r.items() if k not in ("method", "parameters", "inputs")}
            for r in reports
        ]
        typer.echo(
            report_json(
                {"method": method, "parameters": parameters, "inputs": inputs, "layers": layers}
            )
        )


@app.command("linear")
@vcl_command
def linear(
    train: Train,
    test: Test = None,
    layer: Layer = None,
    labels: Labels = None,
    split_field: SplitField = None,
    train_split: TrainSplit = "train",
    test_split: TestSplit = "test",
    train_ids: TrainIds = None,
    test_ids: TestIds = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")] = 100,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Initial learning rate.")] = 0.01,
    momentum: Annotated[float, typer.Option("--momentum", min=0.0, help="SGD momentum.")] = 0.9,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="SGD batch size.")] = 64,
    step_epochs: Annotated[
        int, typer.Option("--step-epochs", min=1, help="Multiply the lr by --gamma this often.")
    ] = 30,
    gamma: Annotated[float, typer.Option("--gamma", min=0.0, help="lr decay factor.")] = 0.1,
    weight_decay: Annotated[
        float, typer.Option("--weight-decay", min=0.0, help="L2 weight decay.")
    ] = 0.0,
    jsonl: Jsonl = False,
    device: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Linear probe: multinomial logistic regression on standardised frozen features.

    SGD (Zhang et al. 2016 / ODCT Table I): momentum 0.9, batch 64, lr 0.01 ×0.1 every
    30 epochs, 100 epochs. Reports top-1 and top-5 test accuracy (fractions) per layer.
    """
    from vcl.device import resolve_device
    from vcl.probe import LinearParams, encode_labels, linear_probe

    dev = str(resolve_device(device))  # once, not once per layer
    params = LinearParams(epochs, lr, momentum, batch_size, step_epochs, gamma, weight_decay)

    def fn(data: Any) -> dict[str, Any]:
        y_tr, y_te, classes = encode_labels(data.y_train, data.y_test)
        out = linear_probe(data.x_train, y_tr, data.x_test, y_te, len(classes), params, dev, seed)
        return {**out, "classes": len(classes)}

    from dataclasses import asdict

    _probe(
        "linear",
        fn,
        {**asdict(params), "seed": seed, "device": dev},
        ["top1", "top5"],
        train,
        test,
        layer,
        labels,
        split_field,
        train_split,
        test_split,
        jsonl,
        (train_ids, test_ids),
    )


@app.command("svm")
@vcl_command
def svm(
    train: Train,
    test: Test = None,
    layer: Layer = None,
    labels: Labels = None,
    split_field: SplitField = None,
    train_split: TrainSplit = "train",
    test_split: TestSplit = "test",
    train_ids: TrainIds = None,
    test_ids: TestIds = None,
    costs: Annotated[
        str,
        typer.Option(
            "--costs",
            help="Comma-separated cost grid C for cross-validation (ties go to the first "
            "best), or 'goyal': the 26 costs of Goyal et al.'s VOC07 scripts (1e-7 ... 100, "
            "then 0.5^4 ... 0.5^19), for reproducing their tables; the default is 7 of "
            "them, about 4x faster.",
        ),
    ] = "0.0001,0.001,0.01,0.1,1,10,100",
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds.")] = 3,
    max_iter: Annotated[
        int, typer.Option("--max-iter", min=1, help="LinearSVC iteration limit.")
    ] = 2000,
    ignore_field: Annotated[
        str,
        typer.Option(
            "--ignore-field",
            metavar="FIELD",
            help="Field of --labels listing, per id, classes that id is difficult for "
            "(a list or 'a|b'; an id with some may have no label): left out of those "
            "classes' test APs, and negatives in their training, as Goyal et al.'s VOC07 "
            "code treats 'difficult' images (vcl images --voc writes them). On by default "
            "because that is the protocol; labels without the field are probed as before; "
            "'' turns it off.",
        ),
    ] = DEFAULT_IGNORE_FIELD,
    jsonl: Jsonl = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=0, help="Worker processes over classes (0: one per CPU core)."
        ),
    ] = 1,
    seed: Seed = 0,
) -> None:
    """Linear SVMs, Goyal et al. 2019's VOC07 protocol; multi-label targets allowed.

    L2-normalised features; per class a one-vs-rest LinearSVC (squared hinge, positive
    weight 2) whose cost is chosen by --folds-fold CV on AP over --costs (fewer folds,
    or none, for a class with fewer training positives or negatives: recorded as
    cv_folds, with a warning). mAP (the headline) is the all-point interpolated AP of
    Goyal et al.'s code; mAP_11point is the VOC07 devkit's 11-point AP, mAP_exact the
    exact area; per-class APs and chosen costs are in per_class. Test rows that ignore
    a class (--ignore-field, VOC07's difficult images) are left out of that class's APs
    only, and training rows that ignore it are its negatives, as in Goyal et al.'s code;
    ignored_test / ignored_train_negatives count those (id, class) pairs, in all and per
    class. --seed fixes liblinear's order (unconverged fits depend on it); --workers
    runs classes in parallel.
    """
    from vcl.console import log
    from vcl.errors import UsageError
    from vcl.probe import GOYAL_COSTS, svm_probe

    grid = (
        GOYAL_COSTS
        if costs.strip().lower() == "goyal"
        else tuple(parse_number_list(costs, "--costs", float, 1e-12, example="0.01,0.1,1"))
    )
    field = ignore_field or None
    # the default finds nothing in labels without VOC's field: that is no news; a field
    # asked for by name and found on no id is a typo or the wrong file
    asked = field not in (None, DEFAULT_IGNORE_FIELD)
    if asked and labels is None:
        raise UsageError(f"--ignore-field {field} is read from --labels FILE; none was given")
    unread = field if labels is None else None  # stores carry labels, never difficult ones
    field = None if labels is None else field  # the report says what was applied
    warned = []

    def fn(data: Any) -> dict[str, Any]:
        none = not (data.ignore_train != "").any() and not (data.ignore_test != "").any()
        if asked and none and not warned:
            log.warning("no id of %s has a %r field: no class is ignored", labels, field)
            warned.append(True)
        multi = any("|" in str(y) for y in (*data.y_train, *data.y_test))
        if unread and multi and not warned:  # multi-label, as VOC07: its difficult unread
            log.warning(
                "multi-label targets without --labels: no %r classes are read, so none is "
                "left out of the test APs (give --labels FILE, e.g. vcl images --voc's)",
                unread,
            )
            warned.append(True)
        return svm_probe(
            data.x_train,
            data.y_train,
            data.x_test,
            data.y_test,
            grid,
            folds,
            max_iter,
            workers,
            seed,
            data.ignore_train,
            data.ignore_test,
        )

    _probe(
        "svm",
        fn,
        {
            "costs": list(grid),
            "folds": folds,
            "max_iter": max_iter,
            "positive_weight": 2.0,
            "ignore_field": field,
            "seed": seed,
        },
        ["mAP", "mAP_11point", "mAP_exact"],
        train,
        test,
        layer,
        labels,
        split_field,
        train_split,
        test_split,
        jsonl,
        (train_ids, test_ids),
        field,
    )


@app.command("fewshot")
@vcl_command
def fewshot(
    train: Train,
    test: Test = None,
    layer: Layer = None,
    labels: Labels = None,
    split_field: SplitField = None,
    train_split: TrainSplit = "train",
    test_split: TestSplit = "test",
    train_ids: TrainIds = None,
    test_ids: TestIds = None,
    shots: Annotated[
        str, typer.Option("--shots", help="Comma-separated training samples per class.")
    ] = "1,5,10,20",
    repeats: Annotated[
        int, typer.Option("--repeats", min=1, help="Seeded draws per shot count.")
    ] = 10,
    c_reg: Annotated[
        float, typer.Option("--C", min=0.0, help="Inverse L2 strength of the logistic regression.")
    ] = 1.0,
    jsonl: Jsonl = False,
    seed: Seed = 0,
) -> None:
    """Few-shot linear classifiers: n samples per class, mean ± std over seeded draws.

    Each draw takes n training samples of every class (class-balanced, without
    replacement; draw r of n uses the seed (seed, n, r)); a multinomial logistic
    regression (L-BFGS) on L2-normalised features is scored on the whole test set.
    """
    from vcl.probe import encode_labels, fewshot_probe

    counts = tuple(parse_number_list(shots, "--shots", int, 1, example="1,5,10,20"))

    def fn(data: Any) -> dict[str, Any]:
        y_tr, y_te, classes = encode_labels(data.y_train, data.y_test)
        out = fewshot_probe(
            data.x_train, y_tr, data.x_test, y_te, classes, counts, repeats, c_reg, seed
        )
        flat = {f"{n}-shot": v["mean"] for n, v in out["shots"].items()}
        return {**flat, **out, "classes": len(classes)}

    _probe(
        "fewshot",
        fn,
        {"shots": list(counts), "repeats": repeats, "C": c_reg, "seed": seed},
        [f"{n}-shot" for n in counts],
        train,
        test,
        layer,
        labels,
        split_field,
        train_split,
        test_split,
        jsonl,
        (train_ids, test_ids),
    )


@app.command("knn")
@vcl_command
def knn(
    train: Train,
    test: Test = None,
    layer: Layer = None,
    labels: Labels = None,
    split_field: SplitField = None,
    train_split: TrainSplit = "train",
    test_split: TestSplit = "test",
    train_ids: TrainIds = None,
    test_ids: TestIds = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Neighbours that vote.")] = 200,
    temperature: Annotated[
        float, typer.Option("--temperature", min=1e-6, help="τ of the exp(s/τ) vote weights.")
    ] = 0.07,
    jsonl: Jsonl = False,
) -> None:
    """Weighted kNN (Wu et al. 2018): the k nearest (cosine) vote with weight exp(s/τ).

    Also reports plain majority voting among the same k (majority_top1).
    """
    from vcl.probe import encode_labels, knn_probe

    def fn(data: Any) -> dict[str, Any]:
        y_tr, y_te, classes = encode_labels(data.y_train, data.y_test)
        out = knn_probe(data.x_train, y_tr, data.x_test, y_te, len(classes), k, temperature)
        return {**out, "classes": len(classes)}

    _probe(
        "knn",
        fn,
        {"k": k, "temperature": temperature},
        ["top1", "top5", "majority_top1"],
        train,
        test,
        layer,
        labels,
        split_field,
        train_split,
        test_split,
        jsonl,
        (train_ids, test_ids),
    )


@app.command("compare")
@vcl_command
def compare(
    reports: Annotated[
        list[Path],
        typer.Argument(
            metavar="REPORT...",
            help="Reports of vcl probe (JSON, or JSONL from --jsonl).",
            show_default=False,
        ),
    ],
) -> None:
    """Side by side: rows are probes (and reports), columns layers, as the papers' tables.

    Headline numbers: linear and knn top-1, svm mAP (all-point interpolated), fewshot mean
    accuracy per shot count; in percent in the table on stderr, as fractions in the
    JSON on stdout.
    """
    from vcl.probe import probe_table

    columns, rows = probe_table(reports)
    from rich.table import Table

    from vcl.console import QUIET, err_console, verbosity

    if verbosity() != QUIET:
        table = Table(title="vcl probe compare (%)")
        table.add_column("probe")
        for c in columns:
            table.add_column(c, justify="right")
        for row in rows:
            cells = [row["values"].get(c) for c in columns]
            table.add_row(row["probe"], *("–" if v is None else f"{100 * v:.2f}" for v in cells))
        err_console.print(table)
    typer.echo(report_json({"columns": columns, "rows": rows}))


EXAMPLES = [
    (
        "Linear probes of every stage (ODCT Table I, left):",
        "vcl probe linear --train train.zarr --test val.zarr > linear.json",
    ),
    (
        "VOC07 SVMs on stage5, labels and splits from the images manifest:",
        "vcl probe svm --train voc.zarr --split-field split --labels voc07.jsonl --layer stage5",
    ),
    (
        "Few-shot accuracy, 1/5/10/20 shots, 10 seeded draws each:",
        "vcl probe fewshot --train train.zarr --test test.zarr --shots 1,5,10,20 --repeats 10",
    ),
    (
        "Weighted kNN with the memory-bank papers' k and temperature, one line per layer:",
        "vcl probe knn --train train.zarr --test test.zarr --k 200 --temperature 0.07 --jsonl",
    ),
    (
        "One table of several reports (rows probes, columns stages):",
        "vcl probe compare linear.json svm.json knn.jsonl",
    ),
]
