"""The parts the R-CNN detectors are composed of, one concern per file: anchors, the box coder, the training
sampler, the RPN, RoI pooling, the RoI heads, the FPN neck, backbones, and the input transform."""
