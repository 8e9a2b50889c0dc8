"""Segmentation and matting models (section E): FCN, U-Net, Segment Anything, MODNet. Semantic segmenters follow
torchvision's convention, ``model(images)`` -> logits (B, C, H, W) or ``{"out": logits}`` at the input size."""
