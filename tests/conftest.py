"""Shared fixtures. Tests marked ``@pytest.mark.paper("slug")`` are the checks that make a paper
``verified`` in the catalog (see paperzoo/catalog); ``@pytest.mark.slow`` keeps a test out of the default run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # for `helpers`

# Paper checks must run, assert something, and agree with catalog/verification.json (see the plugin's docstring).
pytest_plugins = ["paperzoo.catalog.checks"]


@pytest.fixture(autouse=True)
def _seed(request) -> None:
    import helpers

    torch.manual_seed(0)
    helpers.CURRENT["item"] = request.node  # helpers.rel_err records its figure on the running test
    yield
    helpers.CURRENT["item"] = None


@pytest.fixture
def tiny_shapes():
    from paperzoo.data import ShapesDataset

    return ShapesDataset("train", size=64, image_size=16), ShapesDataset("val", size=32, image_size=16)
