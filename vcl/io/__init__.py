"""File contracts: JSONL manifests, zarr stores and video reading."""
