"""CLIPSeg against Hugging Face ``CLIPSegForImageSegmentation``: random, perturbed weights of a reduced config (10-layer
ViT so that layers 3, 6, 9 exist, patch 16, small inputs with resized position embeddings) give the same mask logits
for text prompts and image prompts; the released rd64-refined configuration has exactly HF's tensors (meta device)
and a 1.1M-parameter decoder."""
from __future__ import annotations

import pytest
import torch
from helpers import perturb_, rel_err
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

import paperzoo as pz
from paperzoo.models.multimodal.clipseg import visual_prompt

VOCAB, CTX = 99, 16
SMALL_TEXT = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=CTX, eos_token_id=VOCAB - 1, bos_token_id=VOCAB - 2, pad_token_id=0)
SMALL_VISION = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=10, num_attention_heads=2, image_size=64,
                    patch_size=16)


def _small_pair():
    cfg = CLIPSegConfig(text_config=SMALL_TEXT, vision_config=SMALL_VISION, projection_dim=32, reduce_dim=16,
                        decoder_num_attention_heads=4, decoder_intermediate_size=128, extract_layers=[3, 6, 9],
                        use_complex_transposed_convolution=True)
    ref = perturb_(CLIPSegForImageSegmentation(cfg)).eval()
    ours = pz.create_model("clipseg_rd64_refined", reduce_dim=16, mlp_dim=128, embed_dim=32, width=64, layers=10, heads=2,
                           image_size=64, text_width=64, text_heads=4, text_layers=2, vocab_size=VOCAB, context_length=CTX)
    return pz.load_weights(ours, ref.state_dict(), source="transformers").eval(), ref


def _tokens(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB - 2, (n, CTX), generator=g)
    ids[:, 0] = VOCAB - 2
    for i in range(n):
        ids[i, 3 + 2 * i] = VOCAB - 1
        ids[i, 4 + 2 * i:] = 0
    return ids


@pytest.mark.paper("clipseg")
def test_text_and_image_prompts_equal_transformers() -> None:
    """Text-prompted and image-prompted mask logits equal HF CLIPSeg's (96 px queries: position embeddings resized
    bicubically on both sides; 64 px image prompts)."""
    ours, ref = _small_pair()
    x, ids, support = torch.randn(2, 3, 96, 96), _tokens(2), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = ours(x, ids)
        assert out.shape == (2, 96, 96)
        assert rel_err(out, ref(pixel_values=x, input_ids=ids).logits) < 1e-5
        assert rel_err(ours(x, prompt_images=support), ref(pixel_values=x, conditional_pixel_values=support).logits) < 1e-5


@pytest.mark.paper("clipseg")
def test_released_configuration_and_decoder_size(record_property) -> None:
    """clipseg_rd64_refined has exactly the tensors and shapes of HF's released configuration (ViT-B/16, extract
    layers 3/6/9, D = 64, 4 heads, complex transposed conv), and its decoder has 1.1M parameters."""
    cfg = CLIPSegConfig(extract_layers=[3, 6, 9], reduce_dim=64, decoder_num_attention_heads=4,
                        decoder_intermediate_size=2048, use_complex_transposed_convolution=True,
                        vision_config=dict(patch_size=16), projection_dim=512)
    with torch.device("meta"):
        ref = CLIPSegForImageSegmentation(cfg)
        ours = pz.create_model("clipseg_rd64_refined")
    converted = pz.weights._CONVERTERS[("clipseg", "transformers")](dict(ref.state_dict()), ours)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.state_dict().items()}
    decoder = sum(p.numel() for n, p in ours.named_parameters() if not n.startswith("clip."))
    record_property("decoder_params_m", decoder / 1e6)
    assert decoder == sum(p.numel() for n, p in ref.named_parameters() if n.startswith("decoder."))
    assert abs(decoder / 1e6 - 1.1) < 0.05
    assert all(not p.requires_grad for p in ours.clip.parameters())  # the CLIP backbone is frozen


def test_visual_prompt_darkens_background_and_crops() -> None:
    img = torch.randn(1, 3, 32, 32)
    mask = torch.zeros(1, 32, 32)
    mask[0, 8:16, 8:16] = 1
    full = visual_prompt(img, mask, crop=False)
    assert torch.equal(full[0, :, 8:16, 8:16], img[0, :, 8:16, 8:16])
    black = -torch.tensor((0.48145466, 0.4578275, 0.40821073)) / torch.tensor((0.26862954, 0.26130258, 0.27577711))
    bg = full[0, :, 0, 0]
    assert torch.allclose(bg, black + 0.1 * (img[0, :, 0, 0] - black), atol=1e-6)
    assert visual_prompt(img, mask).shape == (1, 3, 32, 32)


def test_one_prompt_per_image() -> None:
    ours, _ = _small_pair()
    with pytest.raises(ValueError, match="one prompt"):
        ours(torch.randn(2, 3, 64, 64), _tokens(1))
    with pytest.raises(ValueError, match="exactly one prompt"):
        ours(torch.randn(1, 3, 64, 64))
