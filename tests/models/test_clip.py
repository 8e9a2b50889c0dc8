"""CLIP against open_clip (OpenAI's layout, ``*-quickgelu``) and Hugging Face ``CLIPModel``: random, perturbed
reference weights load through ``load_weights`` and give the same image and text features, on reduced configs
and small inputs; the five variants' sizes on the meta device; the loss, its all-gather under two processes,
and the zero-shot classifier against open_clip's."""
from __future__ import annotations

import os

import open_clip
import pytest
import torch
from helpers import perturb_, rel_err

import paperzoo as pz
from paperzoo.models.multimodal.clip import ZeroShotClassifier, clip_loss
from paperzoo.models.multimodal.tokenizer import ClipTokenizer, WordTokenizer

VOCAB, CTX = 99, 16
TEXT = dict(context_length=CTX, vocab_size=VOCAB, width=64, heads=4, layers=2)
OURS_TEXT = dict(context_length=CTX, vocab_size=VOCAB, text_width=64, text_heads=4, text_layers=2)


def _tokens(n: int = 3) -> torch.Tensor:
    """Random token ids with [SOS]=VOCAB-2 first and [EOS]=VOCAB-1 (the highest id) at different positions."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB - 2, (n, CTX), generator=g)
    ids[:, 0] = VOCAB - 2
    for i in range(n):
        end = 4 + 3 * i
        ids[i, end] = VOCAB - 1
        ids[i, end + 1:] = 0
    return ids


def _open_clip(vision: dict, embed_dim: int = 32) -> torch.nn.Module:
    return perturb_(open_clip.model.CLIP(embed_dim, vision, TEXT, quick_gelu=True)).eval()


def _compare(ours: torch.nn.Module, ref: torch.nn.Module, size: int) -> None:
    x = torch.randn(2, 3, size, size)
    ids = _tokens()
    with torch.no_grad():
        assert rel_err(ours.encode_image(x), ref.encode_image(x)) < 1e-5
        assert rel_err(ours.encode_text(ids), ref.encode_text(ids)) < 1e-5
        assert torch.allclose(ours.logit_scale, ref.logit_scale)


@pytest.mark.paper("clip")
@pytest.mark.parametrize("quick_gelu", [True, False])
def test_vit_equals_open_clip(quick_gelu: bool) -> None:
    """A reduced ViT CLIP (2 + 2 layers, 4 heads, 32 px, patch 8) with open_clip's random perturbed weights gives
    open_clip's image and text features (causal mask, EOT pooling): QuickGELU as OpenAI trained it, and exact GELU
    (``act="gelu"``) as LAION's open_clip models use."""
    ref = perturb_(open_clip.model.CLIP(32, dict(image_size=32, layers=2, width=128, head_width=32, patch_size=8), TEXT,
                                        quick_gelu=quick_gelu)).eval()
    ours = pz.create_model("clip_vit_b32", embed_dim=32, image_size=32, layers=2, width=128, heads=4, patch_size=8,
                           act="quick_gelu" if quick_gelu else "gelu", **OURS_TEXT)
    _compare(pz.load_weights(ours, ref.state_dict(), source="open_clip").eval(), ref, 32)


@pytest.mark.paper("clip")
def test_modified_resnet_equals_open_clip_quickgelu() -> None:
    """A reduced CLIP ResNet (one bottleneck per stage, width 16, 64 px): the 3-conv stem, anti-aliased strides and
    attention pooling give open_clip's RN features."""
    ref = _open_clip(dict(image_size=64, layers=(1, 1, 1, 1), width=16))
    ours = pz.create_model("clip_rn50", embed_dim=32, image_size=64, layers=(1, 1, 1, 1), width=16, **OURS_TEXT)
    ours = pz.load_weights(ours, ref.state_dict(), source="open_clip").eval()
    _compare(ours, ref, 64)


@pytest.mark.paper("clip")
def test_vit_equals_transformers_clipmodel() -> None:
    """Hugging Face ``CLIPModel`` from a small config (q/k/v split, projections as Linear): same image and text
    features and the same logits per image as its forward."""
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=CTX, eos_token_id=VOCAB - 1,
                         bos_token_id=VOCAB - 2, pad_token_id=0),
        vision_config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8), projection_dim=32)
    ref = perturb_(CLIPModel(cfg)).eval()
    ours = pz.create_model("clip_vit_b32", embed_dim=32, image_size=32, layers=2, width=128, heads=4, patch_size=8,
                           **OURS_TEXT)
    pz.load_weights(ours, ref.state_dict(), source="transformers").eval()
    x, ids = torch.randn(2, 3, 32, 32), _tokens(2)
    with torch.no_grad():
        out = ref(input_ids=ids, pixel_values=x)
        img, txt, scale = ours(x, ids)
        assert rel_err(img, out.image_embeds) < 1e-5 and rel_err(txt, out.text_embeds) < 1e-5
        assert rel_err(scale * img @ txt.T, out.logits_per_image) < 1e-5


@pytest.mark.paper("clip")
@pytest.mark.parametrize("name, ref_name", [("clip_rn50", "RN50-quickgelu"), ("clip_rn101", "RN101-quickgelu"),
                                            ("clip_vit_b32", "ViT-B-32-quickgelu"), ("clip_vit_b16", "ViT-B-16-quickgelu"),
                                            ("clip_vit_l14", "ViT-L-14-quickgelu")])
def test_released_sizes(name: str, ref_name: str, record_property) -> None:
    """Every variant at the released size (on the meta device) has exactly open_clip's tensors, shapes and parameter
    count, within 0.5% of the count the model's metadata quotes (ViT-B/32: 151.3M)."""
    with torch.device("meta"):
        ours = pz.create_model(name)
        ref = open_clip.model.CLIP(**open_clip.get_model_config(ref_name))
    ref_shapes = {k: v.shape for k, v in ref.state_dict().items() if k not in ("attn_mask",)}
    assert {k: v.shape for k, v in ours.state_dict().items()} == ref_shapes
    n = sum(p.numel() for p in ours.parameters())
    record_property("params_m", n / 1e6)
    assert n == sum(p.numel() for p in ref.parameters())
    assert abs(n / 1e6 - pz.model_meta(name).paper_params_m) / pz.model_meta(name).paper_params_m < 0.005


@pytest.mark.paper("clip")
def test_symmetric_loss_equals_open_clip() -> None:
    """The symmetric InfoNCE of Fig. 3 equals open_clip's ``ClipLoss`` (one process) and a hand-written form."""
    img = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(14.3)
    ours = clip_loss(img, txt, scale)
    ref = open_clip.loss.ClipLoss()(img, txt, scale)
    logits = scale * img @ txt.T
    labels = torch.arange(6)
    hand = (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
    assert rel_err(ours, ref) < 1e-6 and rel_err(ours, hand) < 1e-6


_DDP = """
import os, sys, torch, torch.multiprocessing as mp
from paperzoo.models.multimodal.clip import clip_loss

def data():
    torch.manual_seed(0)
    img, txt = torch.randn(8, 5), torch.randn(8, 5)
    return img, txt, torch.randn(5, 5, requires_grad=True)

def loss_of(img, txt, w):
    f = lambda t: torch.nn.functional.normalize(t @ w, dim=-1)
    return clip_loss(f(img), f(txt), 10.0)

def worker(rank, world, path, port):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    img, txt, w = data()
    part = slice(4 * rank, 4 * rank + 4)
    loss = loss_of(img[part], txt[part], w)
    loss.backward()
    dist.all_reduce(w.grad)
    w.grad /= world  # what DDP does with the gradients
    torch.save({"loss": loss.detach(), "grad": w.grad}, f"{path}/{rank}.pt")
    dist.barrier()  # neither rank tears gloo down while the other still uses it (a teardown race aborted rank 1 once)
    dist.destroy_process_group()

if __name__ == "__main__":  # this process is rank 0, one spawned process rank 1
    other = mp.get_context("spawn").Process(target=worker, args=(1, 2, sys.argv[1], int(sys.argv[2])))
    other.start()
    worker(0, 2, sys.argv[1], int(sys.argv[2]))
    other.join()
    assert other.exitcode == 0
    img, txt, w = data()
    loss = loss_of(img, txt, w)
    loss.backward()
    torch.save({"loss": loss.detach(), "grad": w.grad}, f"{sys.argv[1]}/single.pt")
"""


@pytest.mark.paper("clip")
def test_all_gather_keeps_gradients_across_two_processes(tmp_path) -> None:
    """Two gloo processes with half the batch each: the loss (averaged over ranks) and the DDP-averaged gradients
    equal one process holding the whole batch -- the gather keeps gradients (Fig. 3 over the global batch)."""
    import socket
    import subprocess
    import sys

    from helpers import ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ddp.py"
    script.write_text(_DDP)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(script), str(tmp_path), str(port)], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    parts = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    single = torch.load(tmp_path / "single.pt")
    assert rel_err(sum(p["loss"] for p in parts) / 2, single["loss"]) < 1e-5
    assert rel_err(parts[0]["grad"], single["grad"]) < 1e-5 and rel_err(parts[1]["grad"], single["grad"]) < 1e-5


@pytest.mark.paper("clip")
def test_zero_shot_classifier_equals_open_clip_ensemble() -> None:
    """Prompt ensembling: the class weights equal open_clip's ``build_zero_shot_classifier`` for the same weights,
    templates and tokens, and the logits are exp(t) times the cosine similarities."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    words = WordTokenizer(["red", "blue", "star", "circle", "photo", "of", "a", "drawing"] + [f"w{i}" for i in range(80)],
                          context_length=CTX)
    ours = pz.create_model("clip_vit_b32", embed_dim=32, image_size=32, layers=2, width=128, heads=4, patch_size=8,
                           **{**OURS_TEXT, "vocab_size": words.vocab_size})
    ref = perturb_(open_clip.model.CLIP(32, dict(image_size=32, layers=2, width=128, head_width=32, patch_size=8),
                                        {**TEXT, "vocab_size": words.vocab_size}, quick_gelu=True)).eval()
    pz.load_weights(ours, ref.state_dict(), source="open_clip").eval()
    names, templates = ["red star", "blue circle", "star"], ["a photo of a {}", "a drawing of a {}"]
    clf = ZeroShotClassifier(ours, names, words, templates)
    expected = build_zero_shot_classifier(ref, words, names, templates)
    assert rel_err(clf.weight, expected.T) < 1e-5
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        cos = torch.nn.functional.normalize(ref.encode_image(x), dim=-1) @ expected
        assert rel_err(clf(x), ref.logit_scale.exp() * cos) < 1e-5


@pytest.mark.paper("clip")
def test_prompt_templates_are_the_papers_80_and_its_7() -> None:
    """The 80 ImageNet templates of CLIP's prompt-engineering notebook and the 7-template subset, in order, as
    open_clip's zero-shot metadata holds them (each a '{}' for the class name)."""
    from open_clip import zero_shot_metadata as meta

    from paperzoo.models.multimodal.clip import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    assert list(OPENAI_IMAGENET_TEMPLATES) == [t("{}") for t in meta.OPENAI_IMAGENET_TEMPLATES]
    assert list(SIMPLE_IMAGENET_TEMPLATES) == [t("{}") for t in meta.SIMPLE_IMAGENET_TEMPLATES]
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80 == len(set(OPENAI_IMAGENET_TEMPLATES))
    assert set(SIMPLE_IMAGENET_TEMPLATES) < set(OPENAI_IMAGENET_TEMPLATES)


def test_imagenet_class_names_are_clips() -> None:
    """The 1000 ImageNet class names of CLIP's zero-shot evaluation, in class-index order, as open_clip holds them."""
    from open_clip import zero_shot_metadata as meta

    from paperzoo.models.multimodal.clip import IMAGENET_CLASSNAMES

    assert list(IMAGENET_CLASSNAMES) == list(meta.IMAGENET_CLASSNAMES)
    assert len(IMAGENET_CLASSNAMES) == 1000 and IMAGENET_CLASSNAMES[517] == "construction crane"


def test_logit_scale_is_clipped_at_100() -> None:
    model = pz.create_model("clip_vit_b32", layers=1, text_layers=1, image_size=32, vocab_size=100)
    with torch.no_grad():
        model.logit_scale.fill_(torch.log(torch.tensor(500.0)))
    assert float(model.scale().detach()) == 100.0
    with torch.no_grad():
        model.logit_scale.fill_(torch.log(torch.tensor(20.0)))
    assert abs(float(model.scale().detach()) - 20.0) < 1e-4


def test_clip_bpe_in_tokenizers_equals_open_clip() -> None:
    """CLIP's BPE assembled in Hugging Face ``tokenizers`` gives open_clip's token ids (case, punctuation,
    accents, digits, truncation with [EOS] kept)."""
    tok = ClipTokenizer.from_bpe()
    texts = ["a photo of a cat.", "A  large RED star in the top-left, and a small blue circle!", "héllo wörld 123 don't",
             "x " * 100]
    assert torch.equal(tok(texts), open_clip.tokenize(texts))


def test_hf_weights_refuse_resnet_clip() -> None:
    model = pz.create_model("clip_rn50", layers=(1, 1, 1, 1), width=16, image_size=64, vocab_size=100, text_layers=1)
    with pytest.raises(pz.PaperzooError, match="ViT"):
        pz.load_weights(model, {"x": torch.zeros(1)}, source="transformers")


def test_linear_probe_separates_separable_features() -> None:
    from paperzoo.models.multimodal.clip import linear_probe

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g) * 5
    y = torch.arange(30) % 3
    x = centers[y] + 0.1 * torch.randn(30, 8, generator=g)
    assert torch.equal(linear_probe(x[:15], y[:15], x[15:]), y[15:])
