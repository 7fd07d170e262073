"""The training core shared by every ``vcl pretrain`` method.

It owns what does not depend on the method: the run directory, devices, seeding,
mixed precision, ``torch.compile``, DistributedDataParallel, the SGD optimiser, the
epoch loop with its progress bar, checkpoints and exact resume. A method (see
:mod:`vcl.pretrain`) supplies the data, the model on top of the backbone, the loss of
a batch and whatever it keeps between steps (memories, labels).

Run directory (rank 0 writes it; every file replaced atomically):

- ``config.json``: every parameter, the method's options, vcl version, command, seed,
  sample and track counts;
- ``checkpoint.pt`` after initialisation (epoch 0) and after every epoch: a dict of
  tensors and plain containers (``torch.load(weights_only=True)``): ``backbone``
  (exactly ``build_backbone(arch).state_dict()``), ``head``, ``classifier``,
  ``optimizer``, ``scaler``, ``method_state`` (memories, labels, track index),
  ``rng`` (torch CPU / CUDA states), ``epoch``, ``iteration``, ``method``, ``arch``;
- ``metrics.jsonl``: one line per epoch (epoch 0 = after initialisation);
- ``labels_epoch_N.npy``: the memory's pseudo-labels (N,) int32 after epoch N.

Exact resume: the sample order of an epoch is drawn from (seed, epoch), augmentation
from (seed, iteration), and torch's global generator (dropout) is reseeded at the start
of every epoch, so a run resumed from the epoch-E checkpoint repeats on the CPU exactly
what an uninterrupted run does from epoch E + 1.

Reading a run back (``--resume``) goes through :mod:`vcl.backbones`' readers, as ``vcl
embed`` does: a damaged config.json / checkpoint.pt, or one of another schema major
version, is one ``error:`` line naming the file (exit 65).

``workers`` are DataLoader processes beside the training process (0: none, batches are
read in it), by default 4 but at most one per available core. Python warnings raised
while training (torch's) go to the ``vcl`` log at warning level, so -q silences them.

Multi-GPU: ``torchrun --nproc_per_node G -m vcl pretrain CROPS --method odct -o RUN``
(add ``--nnodes``/``--rdzv-endpoint`` for several machines). ``--batch-size`` is the
global batch; each rank takes 1/G of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vcl.backbones import DAMAGED_HINT, RUN_SCHEMA, load_checkpoint, load_run_config
from vcl.console import log
from vcl.errors import DataError, MissingInputError, OutputError, UsageError
from vcl.parallel import available_cpus
from vcl.pretrain import check_resumed_inputs, dist, inputs_fingerprint, method_class

# Parameters that may change when a run is resumed; every other one must match.
RESUMABLE = {"epochs", "workers", "device", "compile", "amp", "input", "output"}
# Options added after runs were saved, at the value that reproduces what those runs did:
# a config.json without them matches these values.
AS_BEFORE = {"lr_steps": [], "lr_gamma": 0.1, "colour": False}
AMP = ("auto", "off", "bf16", "fp16")
LOADER_WORKERS = 4  # --workers left out: this many loader processes, at most one per core


def default_workers() -> int:
    """DataLoader worker processes when --workers is left out: 4, but no more than the
    available cores (more is slower, and torch warns about it on every loader)."""
    return min(LOADER_WORKERS, available_cpus())


@contextlib.contextmanager
def warnings_to_log() -> Any:
    """Python warnings raised while training (torch's UserWarnings) go to the project's
    log at warning level, one ``warning:`` line per distinct message (torch repeats its
    own for every loader), so -q (errors only) silences them like any other chatter."""
    seen: set[str] = set()

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        text = f"{category.__name__}: " + " ".join(str(message).split())  # one line
        if text not in seen:
            seen.add(text)
            log.warning("%s", text)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@dataclass
class TrainConfig:
    """The options shared by every method (their CLI names: ``--batch-size`` etc.)."""

    input: str | list[str]  # several: the shards of one crops / pairs / videos run
    method: str
    output: str
    arch: str = "resnet50"
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.015
    lr_steps: list[int] = field(default_factory=list)  # epochs after which lr *= lr_gamma
    lr_gamma: float = 0.1
    momentum: float = 0.5  # SGD momentum (ODCT's 0.5)
    weight_decay: float = 1e-5  # ODC's
    size: int = 224
    k: int = 300
    device: str = "auto"
    seed: int = 0
    workers: int = field(default_factory=default_workers)  # DataLoader processes (0: none)
    amp: str = "auto"
    compile: bool = False
    init: str | None = None
    options: Any = field(default=None)  # the method's options dataclass

    def flat(self) -> dict[str, Any]:
        """Every parameter in one flat dict (method options included)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        if self.options is not None:
            out.update(asdict(self.options))
        return out


# ---------------------------------------------------------------------------- files


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            record = exc.msg
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            why = record if isinstance(record, str) else "a record without its epoch"
            raise DataError(f"line {number}: not a metrics record ({why})", path, DAMAGED_HINT)
        records.append(record)
    return records


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Rewrite metrics.jsonl with the lines of earlier epochs plus ``record``."""
    lines = [m for m in read_metrics(run_dir) if m["epoch"] < record["epoch"]] + [record]
    text = "".join(json.dumps(m) + "\n" for m in lines)
    _atomic_write(run_dir / "metrics.jsonl", lambda p: p.write_text(text))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    _atomic_write(path, lambda p: torch.save(state, p))


def owned_files(run_dir: Path) -> list[Path]:
    names = ["config.json", "checkpoint.pt", "metrics.jsonl"]
    return [run_dir / n for n in names if (run_dir / n).exists()] + sorted(
        run_dir.glob("labels_epoch_*.npy")
    )


def check_resumable(run_dir: Path, config: TrainConfig) -> dict[str, Any]:
    """The run's config.json, after checking it was made with the same settings."""
    path = run_dir / "config.json"
    if not run_dir.exists():
        raise MissingInputError(
            "no such run directory", run_dir, "give --resume the -o of an earlier run"
        )
    if not path.exists() or not (run_dir / "checkpoint.pt").exists():
        raise MissingInputError(
            "nothing to resume (no config.json and checkpoint.pt)", run_dir, "drop --resume"
        )
    old = load_run_config(run_dir)  # damaged, or of another schema: one line naming it
    read_metrics(run_dir)  # damaged: refused now, not after the first epoch
    new = config.flat()
    old = {**{k: v for k, v in AS_BEFORE.items() if k not in old}, **old}
    bad = [k for k in sorted(new) if k not in RESUMABLE and old.get(k) != new.get(k)]
    if bad:
        diffs = ", ".join(
            f"{k} ({old[k]!r} there, {new.get(k)!r} now)"
            if k in old
            else f"{k} (absent there: saved by an older vcl; {new.get(k)!r} now)"
            for k in bad
        )
        raise UsageError(
            f"the run was made with other settings: {diffs}",
            run_dir,
            "resume with the same settings, or train into a new -o directory",
        )
    return old


# ---------------------------------------------------------------------------- devices


def pick_device(spec: str) -> torch.device:
    from vcl.device import resolve_device

    device = resolve_device(spec)
    if dist.launched() and device.type == "cuda":
        device = torch.device(f"cuda:{dist.local_rank()}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def amp_dtype(spec: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16; never on the CPU / MPS."""
    if spec not in AMP:
        raise UsageError(f"unknown --amp {spec!r}", "--amp", f"use {', '.join(AMP)}")
    if spec == "off":
        return None
    if device.type != "cuda":
        if spec != "auto":
            raise UsageError(f"--amp {spec} needs a CUDA device (got {device})", "--amp")
        return None
    if spec == "fp16" or (spec == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


# ---------------------------------------------------------------------------- training


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % 2**63


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def train(
    config: TrainConfig, command: str = "", resume: bool = False, overwrite: bool = False
) -> Path:
    """Train ``config.method`` into ``config.output``; returns the run directory.

    A run that fails before writing anything removes the folders it created, so a
    typo'd input or ``--init`` leaves no empty run directory behind."""
    run_dir = Path(config.output)
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # deepest first
    try:
        with warnings_to_log():
            return _train(config, command, resume, overwrite)
    except BaseException:
        for path in created:
            try:
                path.rmdir()  # only ever an empty folder
            except OSError:
                break
        raise


def _train(config: TrainConfig, command: str, resume: bool, overwrite: bool) -> Path:
    from vcl import __version__
    from vcl.backbones import build_backbone, load_backbone, spec_of
    from vcl.seed import seed_everything

    run_dir = Path(config.output)
    cls = method_class(config.method)
    spec = spec_of(config.arch)
    if spec.kind != cls.family:
        raise UsageError(
            f"--arch {config.arch} is {_a(spec.kind)} network; --method {config.method} "
            f"trains {cls.family} networks",
            "--arch",
        )
    if config.epochs < 1 or config.batch_size < 2 or config.k < 1 or config.size < 8:
        raise UsageError("need --epochs >= 1, --batch-size >= 2, --k >= 1 and --size >= 8")
    if any(step < 1 for step in config.lr_steps) or not config.lr_gamma > 0:
        raise UsageError("need --lr-steps of epochs >= 1 and --lr-gamma > 0")
    if not resume and run_dir.exists() and not run_dir.is_dir():
        raise OutputError(
            "is a file, not a run directory", run_dir, "give -o a new or existing directory"
        )
    old_config = check_resumable(run_dir, config) if resume else None
    if not resume and owned_files(run_dir) and not overwrite:
        raise OutputError(
            "holds a run already", run_dir, "pass --resume to continue it or --overwrite"
        )
    gpu = config.device.startswith("cuda") or (
        config.device == "auto" and torch.cuda.is_available()
    )
    dist.setup("cuda" if gpu else "cpu")
    device = pick_device(config.device)
    dtype = amp_dtype(config.amp, device)
    data = cls.open_data(config.input)
    method = cls(config, data, device)
    method.check()
    fingerprint = inputs_fingerprint(data.sample_keys())
    if dist.world() > 1 and config.batch_size < 2 * dist.world():
        raise UsageError(f"--batch-size must be at least 2 per process ({dist.world()} ranks)")
    main = dist.rank() == 0
    if main and not resume:
        for path in owned_files(run_dir):
            path.unlink()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, no permission
            raise OutputError(f"cannot create ({exc.strerror})", run_dir) from None

    seed_everything(config.seed)
    backbone = build_backbone(config.arch)
    if config.init:
        init_model, init_config = load_backbone(config.init)
        if init_config["arch"] != config.arch:
            raise UsageError(
                f"--init run is a {init_config['arch']}, not --arch {config.arch}", config.init
            )
        backbone.load_state_dict(init_model.state_dict())
    model = method.build_model(backbone).to(device)
    if device.type == "cuda":
        fmt = torch.channels_last_3d if spec.kind == "video" else torch.channels_last
        model = model.to(memory_format=fmt)  # 5-D conv weights need the 3-D format
    optimizer = torch.optim.SGD(
        method.param_groups(model),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    for group in optimizer.param_groups:  # each group's lr before the step schedule
        group["base_lr"] = group["lr"]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def autocast() -> Any:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def checkpoint(epoch: int, iteration: int) -> None:
        state = {
            "schema": RUN_SCHEMA,
            "method": config.method,
            "arch": config.arch,
            "epoch": epoch,
            "iteration": iteration,
            "backbone": model.backbone.state_dict(),
            "head": model.head.state_dict(),
            "classifier": model.classifier.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "method_state": method.state_dict(),
            "inputs": fingerprint,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }
        save_checkpoint(run_dir / "checkpoint.pt", state)
        labels = method.labels()
        if labels is not None:  # methods without clusters (triplet) write none
            _atomic_write(run_dir / f"labels_epoch_{epoch}.npy", lambda p: _save_npy(p, labels))

    if resume:
        state = load_checkpoint(run_dir, device)
        _check_model_state(model, state, run_dir)
        if "inputs" in state:  # older checkpoints hold only the count (the method checks it)
            assert old_config is not None
            check_resumed_inputs(state["inputs"], fingerprint, data.path, old_config["input"])
        model.backbone.load_state_dict(state["backbone"])
        model.head.load_state_dict(state["head"])
        model.classifier.load_state_dict(state["classifier"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        method.load_state_dict(state["method_state"])
        start, iteration = int(state["epoch"]) + 1, int(state["iteration"])
        if config.epochs < start - 1:  # config.json would claim fewer epochs than trained
            raise UsageError(
                f"the run has already done {start - 1} epochs, more than --epochs {config.epochs}",
                run_dir,
                f"give --epochs {start - 1} or more (epochs in all, not more epochs)",
            )
        assert old_config is not None
        run_config = {
            **old_config,
            "epochs": config.epochs,
            "resumed": [*old_config.get("resumed", []), command],
        }
        log.info("resuming %s after epoch %d", run_dir, start - 1)
    else:
        run_config = {
            "schema": RUN_SCHEMA,
            "vcl_version": __version__,
            "command": command,
            **config.flat(),
            "samples": data.n,
            "tracks": data.n_tracks,
            "world_size": dist.world(),
            "device_used": str(device),
            "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        method.init_state(model, autocast)
        start, iteration = 1, 0
        if main:
            write_json(run_dir / "config.json", run_config)
            append_metrics(run_dir, {"epoch": 0, "iterations": 0, **method.epoch_metrics()})
            checkpoint(0, 0)
    if main and resume:
        write_json(run_dir / "config.json", run_config)

    net: Any = model
    if dist.world() > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        net = torch.compile(net)
    per_epoch = method.iterations_per_epoch
    for epoch in range(start, config.epochs + 1):
        torch.manual_seed(_epoch_seed(config.seed, epoch))
        lr_scale = step_lr_scale(epoch, config.lr_steps, config.lr_gamma)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_scale
        model.train()
        losses, seen, began = [], 0, time.perf_counter()
        bar = _bar(main, f"epoch {epoch}/{config.epochs}", per_epoch)
        with bar as progress:
            task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=per_epoch, rate="")
            for batch in method.batches(epoch):
                loss, aux = method.train_step(net, batch, iteration + 1, autocast)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                iteration += 1
                method.after_step(aux, iteration)
                losses.append(loss.detach())
                seen += len(batch[1]) * dist.world()
                if len(losses) % 10 == 1:  # .item() waits for the GPU: not every step
                    rate = seen / max(time.perf_counter() - began, 1e-9)
                    text = f"loss {losses[-1].item():.4f}  {rate:.1f} samples/s"
                    progress.update(task, rate=text)
                progress.update(task, advance=1)
        seconds = time.perf_counter() - began
        mean_loss = dist.mean(float(torch.stack(losses).mean()) if losses else float("nan"), device)
        record = {
            "epoch": epoch,
            "iterations": len(losses),
            "loss": mean_loss,
            "lr": config.lr * lr_scale,
            **method.epoch_metrics(),
            "samples_per_s": seen / max(seconds, 1e-9),
            "seconds": seconds,
        }
        if main:
            checkpoint(epoch, iteration)
            append_metrics(run_dir, record)
        dist.barrier()
        if main:
            ratio = record.get("change_ratio")  # only methods with clusters have one
            changed = "" if ratio is None else f", change ratio {ratio:.3f}"
            log.info(
                "epoch %d: loss %.4f%s, %.1f samples/s",
                epoch,
                mean_loss,
                changed,
                record["samples_per_s"],
            )
    dist.cleanup()
    return run_dir


def _check_model_state(model: torch.nn.Module, state: dict[str, Any], run_dir: Path) -> None:
    """A checkpoint whose network no longer fits (e.g. saved by a vcl with another head)
    is one line naming the run, not torch's many-line RuntimeError."""
    from vcl.backbones import state_dict_misfit

    for part in ("backbone", "head", "classifier"):
        misfit = state_dict_misfit(getattr(model, part), state.get(part, {}))
        if misfit:
            raise DataError(
                f"the checkpoint's {part} does not fit this vcl's network: {misfit}",
                run_dir,
                "it was saved by another vcl version: train into a new -o directory",
            )


def step_lr_scale(epoch: int, steps: list[int], gamma: float) -> float:
    """The step schedule of the papers' code (video_cluster: ×0.1 after epochs 160 and
    190 of 200; ODC: ×0.4 after 400): gamma to the number of steps before ``epoch``.
    A function of the epoch alone, so a resumed run continues on the same schedule."""
    return gamma ** sum(epoch > step for step in steps)


def _save_npy(path: Path, values: np.ndarray) -> None:
    with open(path, "wb") as fh:  # np.save on a path would append ".npy" to the temp name
        np.save(fh, values)


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None


def _bar(main: bool, description: str, total: int) -> Any:
    from vcl.console import progress

    return progress() if main else _NoBar()
