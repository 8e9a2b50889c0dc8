"""paperzoo: 76 computer-vision papers implemented faithfully, checked against independent references,
and re-runnable in miniature with ``paperzoo reproduce SLUG``.

    import paperzoo as pz
    pz.list_models("resnet*")
    model = pz.create_model("resnet50", num_classes=10)
    pz.load_weights(model, "resnet50.pth", source="torchvision")
    pz.paper("resnet").status
"""
from .catalog import Paper, paper, papers
from .errors import PaperzooError
from .registry import ModelMeta, create_model, list_models, model_meta, register_model
from .weights import load_weights

__version__ = "0.1.0"

__all__ = [
    "ModelMeta",
    "Paper",
    "PaperzooError",
    "create_model",
    "list_models",
    "load_weights",
    "model_meta",
    "paper",
    "papers",
    "register_model",
]
