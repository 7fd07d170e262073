"""The dependency stack this project relies on works here (see pyproject's markers)."""

from __future__ import annotations

from importlib import metadata

import numpy as np


def installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_only_the_headless_opencv_build_is_installed() -> None:
    assert installed("opencv-contrib-python-headless")
    for gui_build in ("opencv-python", "opencv-contrib-python", "opencv-python-headless"):
        assert not installed(gui_build), f"{gui_build} shares cv2/ and breaks the install"


def test_exactly_one_faiss_build() -> None:
    assert installed("faiss-gpu") != installed("faiss-cpu")


def test_faiss_kmeans_and_flat_search_recover_planted_clusters() -> None:
    import faiss

    assert faiss.get_num_gpus() >= 0  # 0 on a machine without a GPU, never an exception
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16)).astype(np.float32) * 10
    labels = rng.integers(0, 5, 1000)
    x = (centres[labels] + rng.normal(size=(1000, 16))).astype(np.float32)
    kmeans = faiss.Kmeans(16, 5, niter=20, seed=1, nredo=3)
    kmeans.train(x)
    _, assigned = kmeans.index.search(x, 1)
    # every planted cluster maps to one k-means cluster and back
    pairs = {(int(a), int(b)) for a, b in zip(labels, assigned[:, 0], strict=True)}
    assert len(pairs) == 5 and len({b for _, b in pairs}) == 5
    index = faiss.IndexFlatL2(16)
    index.add(x)
    _, nearest = index.search(x[:50], 1)
    np.testing.assert_array_equal(nearest[:, 0], np.arange(50))


def test_opencv_has_the_contrib_modules_stages_need() -> None:
    import cv2

    assert hasattr(cv2, "ximgproc") and hasattr(cv2.ximgproc, "createEdgeBoxes")
    assert hasattr(cv2, "DISOpticalFlow_create")
    assert hasattr(cv2, "TrackerKCF_create") or hasattr(cv2, "legacy")


def test_every_imported_package_is_a_declared_dependency() -> None:
    """A module vcl imports (at any depth, lazily too) must come with a plain install:
    a package that only the dev extra brings would break that command for users."""
    import ast
    import re
    import sys
    from pathlib import Path

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = {
        re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower().replace("_", "-")
        for spec in project["dependencies"]
    }
    imported = set()
    for path in (root / "vcl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "vcl"}
    providers = metadata.packages_distributions()
    missing = {}
    for module in sorted(third_party):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        if not dists & declared:
            missing[module] = sorted(dists)
    assert not missing, f"imported but not in [project] dependencies: {missing}"
