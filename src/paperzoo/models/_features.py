"""``features_only=True`` for any model that implements ``forward_intermediates`` and ``feature_info``."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import PaperzooError


class FeatureInfo(list):
    """The chosen feature levels: a list of dicts with ``num_chs``, ``reduction`` and ``module``."""

    def channels(self) -> list[int]:
        return [f["num_chs"] for f in self]

    def reduction(self) -> list[int]:
        return [f["reduction"] for f in self]

    def module_name(self) -> list[str]:
        return [f["module"] for f in self]


class FeatureExtractor(nn.Module):
    """Wraps a backbone so that ``forward`` returns the list of feature maps at ``out_indices`` (with
    ``as_dict``, an ordered dict keyed ``"0"``, ``"1"``, ... in the same order, as necks such as FPN take).

    Modules the chosen levels never reach (the classifier, later stages) are removed; ``pruned`` lists
    their state-dict prefixes so that ``load_weights`` can take a full checkpoint. ``out_channels`` lists
    the channels of each returned map.
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None, as_dict: bool = False) -> None:
        super().__init__()
        name = getattr(getattr(model, "meta", None), "name", type(model).__name__)
        if not hasattr(model, "forward_intermediates") or not hasattr(model, "feature_info"):
            raise PaperzooError(f"model '{name}' does not support features_only")
        levels = len(model.feature_info)
        indices = tuple(range(levels)) if out_indices is None else tuple(out_indices)
        bad = [i for i in indices if not -levels <= i < levels]
        if bad or not indices:
            raise PaperzooError(
                f"out_indices {tuple(out_indices or ())} out of range for '{name}': it has feature levels 0..{levels - 1}"
            )
        self.out_indices = tuple(sorted(i % levels for i in indices))
        self.feature_info = FeatureInfo(model.feature_info[i] for i in self.out_indices)
        self.pruned: list[str] = list(model.prune_for_features(max(self.out_indices)))
        self.model = model
        self.meta = getattr(model, "meta", None)
        self.as_dict = as_dict
        self.out_channels = self.feature_info.channels()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | OrderedDict[str, torch.Tensor]:
        maps = self.model.forward_intermediates(x, self.out_indices)
        if self.as_dict:
            return OrderedDict((str(i), m) for i, m in enumerate(maps))
        return maps
