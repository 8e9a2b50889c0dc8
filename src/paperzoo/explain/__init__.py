"""Explaining predictions: Grad-CAM and Guided Grad-CAM for CNN and transformer layers."""
from .gradcam import GradCAM, GuidedGradCAM, guided_backprop, normalize_maps, pointing_game, to_feature_map, tokens_to_map
from .overlay import overlay, save_explanation

__all__ = ["GradCAM", "GuidedGradCAM", "guided_backprop", "normalize_maps", "overlay", "pointing_game", "save_explanation",
           "to_feature_map", "tokens_to_map"]
