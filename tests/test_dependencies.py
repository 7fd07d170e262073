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
