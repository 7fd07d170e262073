"""The whole toolkit on generated data: every stage run as an ordinary ``vcl`` command.

``vcl demo OUT_DIR`` is the README's first command. It makes a small synthetic data set
(``vcl synth``) and runs both branches of the toolkit on it, one subprocess per step:

- appearance (ODCT): proposals → tracks → crops → pretrain (``odct`` and ``odc``,
  ResNet-18 on 32 px crops) → embed → cluster + cluster eval (intra-track entropy),
  probe knn/linear and retrieve eval on video features (label = motion class, which
  the synthetic videos tie to the objects' appearance);
- motion prior (Tokmakov et al.): idt → fisher fit/encode → cluster + cluster eval.

Each step is a list of ``vcl`` arguments and the file it makes; the command is logged
before it runs (as ``vcl ...``, ready to copy), and a step whose output exists is
skipped, so an interrupted demo continues where it stopped (stores resume their own
``.partial``; a pretrain run resumes with ``--resume``). Reports that commands print
on stdout (``proposals eval``, ``probe``, ...) are written atomically to JSON files.
The summary has one row per step whose metrics are read back from that step's own
output file, never from memory.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vcl.console import log
from vcl.errors import DataError, OutputError, VclError

DEMO_SCHEMA = "vcl.demo/1"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults take ~8 CPU-minutes (~5 min on two idle cores)."""

    videos: int = 16  # synthetic videos (a quarter in the test split)
    frames: int = 48  # frames per video (160×120)
    epochs: int = 3  # pretraining epochs per method
    crop_size: int = 32  # crop side and training input side (px)
    per_track: int = 8  # crops per track
    tracks_per_video: int = 5  # best EdgeBoxes tracks kept per video (--top)
    k: int = 8  # clusters: pretraining pseudo-labels and k-means on crops
    seed: int = 0


@dataclass
class Step:
    """One ``vcl`` command, the file it makes, and how to read its key metric back."""

    stage: str
    args: list[str]
    output: Path
    metric: Callable[[Path], dict[str, Any]]
    stdout: bool = False  # the command prints its result: write stdout to ``output``
    done: Callable[[Path], bool] = field(default=lambda p: p.exists())
    resume: list[str] | None = None  # arguments to use instead when ``output`` is partial

    def command(self, args: list[str] | None = None) -> str:
        """The command as a user types it (``vcl ...``, stdout redirected to the output)."""
        text = shlex.join(["vcl", *(args or self.args)])
        return f"{text} > {shlex.quote(str(self.output))}" if self.stdout else text


# ---------------------------------------------------------------- metric readers
def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the step's report ({exc})", path) from None


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _store_rows(path: Path) -> dict[str, Any]:
    from vcl.io.store import Store

    store = Store(path)
    return {"rows": store.n_rows, "groups": len(store.group_ids)}


def _features(path: Path) -> dict[str, Any]:
    from vcl.io.store import Store

    store = Store(path)
    name = next(c for c in store.columns if c.startswith("features"))
    rows, dim = store[name].shape
    return {"rows": int(rows), "dim": int(dim)}


def _synth(path: Path) -> dict[str, Any]:
    return {
        "videos": _count_lines(path),
        "gt_tracks": _count_lines(path.parent / "gt_tracks.jsonl"),
    }


def _proposals_eval(path: Path) -> dict[str, Any]:
    report = _json(path)
    recall = report["recall"]["0.5"]
    top = max(recall, key=int)
    return {f"recall@0.5 ({top} boxes)": recall[top], "abo": report["abo"]["all"]}


def _track_eval(path: Path) -> dict[str, Any]:
    r = _json(path)
    return {"tracks": r["predicted_tracks"], "coverage": r["coverage"], "purity": r["purity"]}


def _run(path: Path) -> dict[str, Any]:
    lines = path.joinpath("metrics.jsonl").read_text(encoding="utf-8").splitlines()
    last = json.loads(lines[-1])
    return {
        "epoch": last["epoch"],
        "change_ratio": last["change_ratio"],
        "intra_track_entropy": last["intra_track_entropy"],
    }


def _run_done(epochs: int) -> Callable[[Path], bool]:
    def done(path: Path) -> bool:
        metrics = path / "metrics.jsonl"
        if not metrics.exists() or not (path / "checkpoint.pt").exists():
            return False
        lines = [x for x in metrics.read_text(encoding="utf-8").splitlines() if x.strip()]
        return bool(lines) and json.loads(lines[-1])["epoch"] >= epochs

    return done


def _cluster_eval(path: Path) -> dict[str, Any]:
    r = _json(path)
    keys = ["intra_track_entropy", "nmi", "purity"]
    out = {k: r[k] for k in keys if r.get(k) is not None}
    out["gini"] = r["sizes"]["gini"]
    return out


def _clusters(path: Path) -> dict[str, Any]:
    from vcl.io.store import Store

    store = Store(path)
    sizes = store["sizes"][0]
    return {"rows": store.n_rows, "non_empty": int((sizes > 0).sum())}


def _probe(path: Path) -> dict[str, Any]:
    r = _json(path)
    layer = r["layers"][-1]
    return {"top1": layer["metrics"]["top1"], "test_samples": layer["test_samples"]}


def _retrieve(path: Path) -> dict[str, Any]:
    r = _json(path)
    return {**r["recall"], "queries": r["queries"]}


def _fisher_model(path: Path) -> dict[str, Any]:
    from vcl.io.store import Store

    store = Store(path, kind="fisher_model")
    curves = store.attrs.get("log_likelihood") or {}
    final = [float(v[-1]) for v in curves.values() if v]
    return {
        "parts": len(store.attrs.get("parts", [])),
        "k": store.attrs.get("k"),
        "log_likelihood": sum(final) / len(final) if final else None,
    }


def _file(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size}


# ---------------------------------------------------------------- the plan
def plan(out: Path, config: DemoConfig) -> list[Step]:
    """Every step of the demo, in order, with paths under ``out``."""
    c = config
    data = out / "data"
    videos, gt = data / "videos.jsonl", data / "gt_tracks.jsonl"
    seed = ["--seed", str(c.seed)]
    s = str
    steps = [
        Step(
            "synth",
            ["synth", s(data), "--videos", s(c.videos), "--frames", s(c.frames), *seed],
            videos,
            _synth,
        ),
        # --- appearance branch (ODCT)
        Step(
            "proposals",
            [
                "proposals",
                s(videos),
                "-o",
                s(out / "proposals.zarr"),
                "--min-area",
                "2000",
                "--workers",
                "0",
            ],
            out / "proposals.zarr",
            _store_rows,
        ),
        Step(
            "proposals eval",
            ["proposals", "eval", s(out / "proposals.zarr"), "--gt", s(gt), "--kind", "object"],
            out / "proposals_eval.json",
            _proposals_eval,
            stdout=True,
        ),
        Step(
            "track",
            [
                "track",
                s(out / "proposals.zarr"),
                "--videos",
                s(videos),
                "-o",
                s(out / "tracks.jsonl"),
                "--min-len",
                "20",
                "--top",
                s(c.tracks_per_video),
            ],
            out / "tracks.jsonl",
            lambda p: {"tracks": _count_lines(p)},
        ),
        Step(
            "track eval",
            ["track", "eval", s(out / "tracks.jsonl"), "--gt", s(gt), "--min-len", "20"],
            out / "track_eval.json",
            _track_eval,
            stdout=True,
        ),
        Step(
            "crops",
            [
                "crops",
                s(out / "tracks.jsonl"),
                "--videos",
                s(videos),
                "-o",
                s(out / "crops.zarr"),
                "--per-track",
                s(c.per_track),
                "--size",
                s(c.crop_size),
            ],
            out / "crops.zarr",
            _store_rows,
        ),
    ]
    for method in ("odct", "odc"):
        run = out / "runs" / method
        train = [
            "--method",
            method,
            "--arch",
            "resnet18",
            "--epochs",
            s(c.epochs),
            "--batch-size",
            "32",
            "--size",
            s(c.crop_size),
            "--k",
            s(c.k),
            "--min-cluster",
            "2",
            "--workers",
            "0",
            "--device",
            "cpu",
            *seed,
        ]
        crops = s(out / "crops.zarr")
        steps.append(
            Step(
                f"pretrain {method}",
                ["pretrain", crops, *train, "-o", s(run)],
                run,
                _run,
                done=_run_done(c.epochs),
                resume=["pretrain", crops, *train, "--resume", s(run)],
            )
        )
    for method in ("odct", "odc"):
        run = out / "runs" / method
        feats, vfeats = out / f"features-{method}.zarr", out / f"video-features-{method}.zarr"
        clusters, report = out / f"clusters-{method}.zarr", out / f"clusters-{method}.json"
        steps += [
            Step(
                f"embed {method} crops",
                ["embed", s(run), s(out / "crops.zarr"), "-o", s(feats), "--device", "cpu"],
                feats,
                _features,
            ),
            Step(
                f"cluster {method}",
                ["cluster", s(feats), "--k", s(c.k), "-o", s(clusters), *seed],
                clusters,
                _clusters,
            ),
            Step(
                f"cluster eval {method}",
                ["cluster", "eval", s(clusters), "--tracks", s(feats)],
                report,
                _cluster_eval,
                stdout=True,
            ),
            Step(
                f"embed {method} videos",
                [
                    "embed",
                    s(run),
                    s(videos),
                    "-o",
                    s(vfeats),
                    "--frames-per-video",
                    "4",
                    "--size",
                    "64",
                    "--device",
                    "cpu",
                ],
                vfeats,
                _features,
            ),
        ]
        split = ["--train", s(vfeats), "--split-field", "split", "--labels", s(videos)]
        steps += [
            Step(
                f"probe knn {method}",
                ["probe", "knn", *split, "--k", "20"],
                out / f"probe-knn-{method}.json",
                _probe,
                stdout=True,
            ),
            Step(
                f"probe linear {method}",
                ["probe", "linear", *split, "--device", "cpu", *seed],
                out / f"probe-linear-{method}.json",
                _probe,
                stdout=True,
            ),
            Step(
                f"retrieve eval {method}",
                [
                    "retrieve",
                    "eval",
                    "--query",
                    s(vfeats),
                    "--labels",
                    s(videos),
                    "--split-field",
                    "split",
                    "-k",
                    "1,5",
                    "--device",
                    "cpu",
                ],
                out / f"retrieve-{method}.json",
                _retrieve,
                stdout=True,
            ),
        ]
    # --- motion branch (IDT prior)
    idt, model, fisher = out / "idt.zarr", out / "fisher-model.zarr", out / "fisher.zarr"
    # Farneback, the faithful default: DIS's fast preset loses small objects on small
    # frames (benchmarks/fidelity_prior.py), which halves the motion clusters' NMI here.
    steps += [
        Step(
            "idt",
            [
                "idt",
                s(videos),
                "-o",
                s(idt),
                "--flow",
                "farneback",
                "--no-humans",
                "--workers",
                "0",
            ],
            idt,
            _store_rows,
        ),
        Step(
            "fisher fit",
            [
                "fisher",
                "fit",
                s(idt),
                "-o",
                s(model),
                "--k",
                "8",
                "--sample-videos",
                s(c.videos),
                "--per-video",
                "200",
                "--device",
                "cpu",
                *seed,
            ],
            model,
            _fisher_model,
        ),
        Step(
            "fisher encode",
            [
                "fisher",
                "encode",
                s(idt),
                "--model",
                s(model),
                "-o",
                s(fisher),
                "--videos",
                s(videos),
                "--sketch-dim",
                "256",
            ],
            fisher,
            _features,
        ),
        Step(
            "cluster motion",
            ["cluster", s(fisher), "--k", "4", "-o", s(out / "clusters-motion.zarr"), *seed],
            out / "clusters-motion.zarr",
            _clusters,
        ),
        Step(
            "cluster eval motion",
            ["cluster", "eval", s(out / "clusters-motion.zarr"), "--labels", s(videos)],
            out / "clusters-motion.json",
            _cluster_eval,
            stdout=True,
        ),
        Step(
            "plot curves",
            [
                "plot",
                "curves",
                s(out / "runs" / "odct"),
                s(out / "runs" / "odc"),
                "-o",
                s(out / "curves.png"),
                "--metric",
                "change_ratio",
                "--metric",
                "intra_track_entropy",
            ],
            out / "curves.png",
            _file,
        ),
    ]
    return steps


# ---------------------------------------------------------------- running
class StepFailed(VclError):
    """A demo step's command exited non-zero; the demo stops with its exit code."""

    def __init__(self, step: Step, code: int):
        self.exit_code = code  # type: ignore[assignment]  # the step's own exit status
        super().__init__(
            f"step '{step.stage}' failed (exit {code}): {step.command()}",
            None,
            "its message is above; fix it and rerun vcl demo (finished steps are kept)",
        )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_params(out: Path, config: DemoConfig) -> None:
    """A demo folder holds one demo: refuse to mix outputs made with other sizes."""
    path = out / "demo.json"
    params = asdict(config)
    if path.exists():
        previous = _json(path).get("params")
        if previous != params:
            changed = sorted(k for k in params if (previous or {}).get(k) != params[k])
            raise OutputError(
                f"holds a demo made with other parameters ({', '.join(changed)})",
                out,
                "use another folder, or delete this one",
            )
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create ({exc.strerror})", out) from None
    from vcl.io.store import provenance

    record = provenance(DEMO_SCHEMA, params, config.seed)
    _atomic_write(path, (json.dumps(record, indent=2) + "\n").encode())


def run_demo(out: Path, config: DemoConfig, quiet_steps: bool = True) -> list[dict[str, Any]]:
    """Run (or continue) the demo in ``out``; one summary row per step.

    Each row: ``stage``, ``command`` (as printed), ``output``, ``metrics`` (read from
    ``output`` after the step), ``seconds`` (None when the step was already done).
    The rows are also written to ``out/summary.json``.
    """
    _check_params(out, config)
    rows = []
    steps = plan(out, config)
    for i, step in enumerate(steps, 1):
        seconds = None
        if step.done(step.output):
            log.info(
                "[%d/%d] %s: done before, skipped (%s)", i, len(steps), step.stage, step.output
            )
        else:
            args = step.resume if step.resume and step.output.exists() else step.args
            log.info("[%d/%d] $ %s", i, len(steps), step.command(args))
            began = time.perf_counter()
            _execute(step, args, quiet_steps)
            seconds = time.perf_counter() - began
        rows.append(
            {
                "stage": step.stage,
                "command": step.command(),
                "output": str(step.output),
                "metrics": step.metric(step.output),
                "seconds": seconds,
            }
        )
    _atomic_write(out / "summary.json", (json.dumps(rows, indent=2) + "\n").encode())
    return rows


def _execute(step: Step, args: list[str], quiet: bool) -> None:
    command = [sys.executable, "-m", "vcl", *args, *(["-q"] if quiet else [])]
    proc = subprocess.run(
        command,
        stdout=subprocess.PIPE if step.stdout else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise StepFailed(step, proc.returncode)
    if step.stdout:
        _atomic_write(step.output, proc.stdout)
