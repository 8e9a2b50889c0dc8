"""The reproduction kit: what every ``paperzoo reproduce`` experiment is built from.

* ``data``: the built-in data (``Data``: synthetic scenes or digits, with their knobs), dataset views
  (``Part``, ``Repeated``) and the one batch augmentation (``FlipShift``);
* ``fit``: one training run through the Trainer (``fit -> Run``), the shared ``Recipe``, evaluation helpers;
* ``paperzoo.cost`` (shared with ``paperzoo bench``): parameters, multiply-accumulates, cost matching;
* ``models``: the narrow ResNet-50 testbed and the small-input initialisation the CNN miniatures share;
* ``verdicts``: THE rule that decides held / did not hold / inconclusive against seed noise;
* ``plots``: the figures.
"""
from . import plots, verdicts
from ...cost import macs, match_cost, params
from .data import Data, FlipShift, Part, Repeated, background, digits, scenes
from .models import narrow_resnet50, small_input_init
from .fit import Recipe, Run, accuracy, calibration, fit, predictions, run_arms, seeded
from .verdicts import Decision, about_equal, all_of, at_least, beats, mean, per_seed, sd, spread

__all__ = [
    "Data", "Decision", "FlipShift", "Part", "Recipe", "Repeated", "Run", "about_equal", "accuracy", "all_of", "calibration",
    "at_least", "background", "beats", "digits", "fit", "macs", "match_cost", "mean", "params", "per_seed", "plots",
    "narrow_resnet50", "predictions", "run_arms", "scenes", "sd", "seeded", "small_input_init", "spread", "verdicts",
]
