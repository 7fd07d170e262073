"""Files from users are loaded without running code: pickle payloads are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vcl.errors import DataError, ExitCode


class Payload:
    """Unpickling this makes a folder: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_checkpoint_with_a_pickle_payload_is_refused(tmp_path):
    import torch

    from vcl.backbones import build_backbone, load_backbone

    marker = tmp_path / "payload-ran"
    state = {"backbone": build_backbone("resnet18").state_dict(), "extra": Payload(str(marker))}
    torch.save(state, tmp_path / "checkpoint.pt")
    (tmp_path / "config.json").write_text(json.dumps({"arch": "resnet18"}))
    with pytest.raises(DataError, match=r"checkpoint\.pt cannot be loaded"):
        load_backbone(tmp_path)
    assert not marker.exists()
    # the payload is real: a plain (unsafe) torch.load in another process runs it
    code = f"import torch; torch.load({str(tmp_path / 'checkpoint.pt')!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    assert marker.exists()


def test_npy_features_with_a_pickle_payload_are_refused(tmp_path, invoke):
    marker = tmp_path / "payload-ran"
    np.save(tmp_path / "f.npy", np.array([Payload(str(marker))] * 3, dtype=object))
    result = invoke("cluster", "run", tmp_path / "f.npy", "--k", "2", "-o", tmp_path / "c.zarr")
    assert result.exit_code == ExitCode.DATA
    assert result.stderr.strip().splitlines()[-1].startswith("error:")
    assert not marker.exists() and not (tmp_path / "c.zarr").exists()
