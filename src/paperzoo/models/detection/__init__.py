"""Object detectors (section D): each registered under torchvision's name where torchvision has the model, with
its call convention (``model(images)`` -> a list of {"boxes", "labels", "scores"} in eval, ``model(images,
targets)`` -> a dict of named losses in training) and a ``detect(images)`` method for evaluation and drawing."""
