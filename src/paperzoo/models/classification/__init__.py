"""Image classification backbones (papers of sections A and B)."""
