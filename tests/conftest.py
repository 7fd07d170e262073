"""Shared fixtures: tiny, odd-sized, seeded data made by the tests themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vcl.cli.app import app
from vcl.parallel import available_cpus


def moving_square_frames(
    n: int = 20,
    width: int = 37,
    height: int = 23,
    seed: int = 0,
) -> list[np.ndarray]:
    """A bright square sliding right over a seeded smooth pattern: frames are known."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 6.28, 3)
    background = np.stack([40 + 30 * np.sin(xx / 4 + yy / 7 + p) for p in phase], -1)
    background = background.astype(np.uint8)
    frames = []
    for t in range(n):
        frame = background.copy()
        x = t % (width - 6)
        frame[5:11, x : x + 6] = (230, 40, 40)
        frame[0, 0] = (t * 11) % 256, 0, 0  # a per-frame mark
        frames.append(frame)
    return frames


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(runner: CliRunner):
    """Run ``vcl ARGS`` in-process; returns the click Result (stdout/stderr apart)."""

    def _invoke(*args: str, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return _invoke


def cli(*args: object, input: str | None = None):
    """``vcl ARGS`` in-process, for module-level helpers that take no fixture."""
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def metrics(run: Path) -> list[dict]:
    """The records of a pretrain run directory's metrics.jsonl."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


TIMING = ("samples_per_s", "clips_per_s", "seconds")


def without_timing(m: dict) -> dict:
    """A metrics record without its wall-clock fields (equal across exact resumes)."""
    return {k: v for k, v in m.items() if k not in TIMING}


def run_vcl(
    *args: str,
    cwd: Path | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Run ``vcl`` as a real subprocess (as a shell user would)."""
    return subprocess.run(
        [sys.executable, "-m", "vcl", *map(str, args)],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: minutes of CPU; runs only with VCL_SLOW_TESTS=1")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # the cores are shared out between the test processes: no oversubscription
        import torch

        torch.set_num_threads(max(1, available_cpus() // workers))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one test process per core this job may use, at most 4 (each holds
    torch and its own copy of the module fixtures)."""
    return min(available_cpus(), 4)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("VCL_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set VCL_SLOW_TESTS=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def fake_faiss_gpu(monkeypatch, module, *clusterers: str) -> tuple[list, list]:
    """Make ``module.faiss_gpu`` answer faiss GPU 5 for a run on the CPU, and each named
    ``vcl.cluster`` function record the ``gpu`` it is given, then cluster on the CPU:
    ``(devices asked about, gpus received)``, filled as the run goes."""
    import vcl.cluster

    devices: list = []
    gpus: list = []

    def fake_gpu(device):
        devices.append(device)
        return 5

    monkeypatch.setattr(module, "faiss_gpu", fake_gpu, raising=False)
    for name in clusterers:

        def recording(*args, gpu=None, _real=getattr(vcl.cluster, name), **kwargs):
            gpus.append(gpu)
            return _real(*args, gpu=None, **kwargs)

        monkeypatch.setattr(vcl.cluster, name, recording)
    return devices, gpus
