"""C5: cross-camera convolutional color constancy (Afifi et al., ICCV 2021, arXiv 2011.11890).

The paper's contribution is a *transductive* illuminant estimator. Colour constancy as in CCC/FFCC is a
convolution in log-chroma space: the (u, v) histogram N of an image (Eq. 3, u = log(g/r), v = log(g/b)) is
convolved with a filter F, a bias B is added (optionally a gain G multiplies first, Eq. 10), a softmax over the
bins gives the heat map P (Eq. 4), and its soft-argmax is the illuminant's chroma (Eq. 5). C5 does not learn one
F, B for one camera: an encoder-decoder *produces* F, B (and G) from the query's histogram together with the
histograms of m - 1 unlabelled images of the same camera, so the model calibrates itself to a camera it never saw.

* ``histogram_features``: per image two histograms (Sec. 3.1) — of the pixels and of a local-gradient image,
  each weighted by the pixel's brightness and square-root normalised;
* ``C5``: m encoder streams (one per input histogram, the query first), each block followed by a max-pool across
  the streams and a 1x1 merge (cross-pooling, Fig. 3), a bottleneck, and one U-Net decoder per map (F, B, G) with
  skip connections from the query's stream; then the FFT convolution, the softmax and the soft-argmax;
* ``angular_error`` and ``c5_loss``: the angular-error loss with the Sobel smoothness terms on F, B, G (Eq. 9).

Where the paper leaves details open the authors' code (github.com/mahmoudnafifi/C5) decides, so that their
trained models load (``pz.load_weights(model, path, source="official")``) and give their estimates: histogram
bins span [-2.85, 2.85] and a pixel counts in every bin whose centre is within one bin width (so in up to 2 x 2
bins); the histograms carry two extra channels of normalised (u, v) coordinates; the heat map's coordinates are
(index - (n-1)/2) * 5.7 / n; BatchNorm on the encoder's first and third blocks, InstanceNorm in the decoders,
LeakyReLU, replicate padding.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as Fn
from torch import nn

from ...errors import PaperzooError
from ...registry import register_model
from ...weights import register_converter

EPS = 1e-9
BOUNDARY = 2.85  # log-chroma histograms span [-BOUNDARY, BOUNDARY] in u and v


# ------------------------------------------------------------------------------------------ log-chroma features
def log_chroma(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) RGB -> (..., 2) log-chroma (u, v) = (log g - log r, log g - log b)."""
    log = torch.log(rgb + EPS)
    return torch.stack([log[..., 1] - log[..., 0], log[..., 1] - log[..., 2]], -1)


def uv_to_rgb(uv: torch.Tensor) -> torch.Tensor:
    """(..., 2) log-chroma -> unit-norm RGB (exp(-u), 1, exp(-v)) / norm, the inverse of ``log_chroma`` up to scale."""
    rgb = torch.stack([torch.exp(-uv[..., 0]), torch.ones_like(uv[..., 0]), torch.exp(-uv[..., 1])], -1)
    return rgb / rgb.norm(dim=-1, keepdim=True)


def bin_centres(bins: int, boundary: float = BOUNDARY, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The u (column) bin centres, -boundary ... +boundary; rows run the other way (v from +boundary down)."""
    step = 2 * boundary / (bins - 1)
    return -boundary + step * torch.arange(bins, dtype=dtype)


def log_chroma_histogram(pixels: torch.Tensor, bins: int = 64, boundary: float = BOUNDARY) -> torch.Tensor:
    """Eq. 3 for a batch of pixel lists: ``pixels`` (B, P, 3) -> (B, bins, bins), rows v (descending), columns u.

    N(u, v) = sum over pixels with |u_i - u| and |v_i - v| within one bin width of ||I_i||; pixels that are zero
    in every channel are left out; N <- sqrt(N / sum N). (The authors' code, which this follows, also skips a
    pixel at exactly zero distance from a centre: a measure-zero case kept for bit-equality.)
    """
    pixels = pixels.to(torch.float64)
    b = pixels.shape[0]
    step = 2 * boundary / (bins - 1)
    centres = bin_centres(bins, boundary)
    uv = log_chroma(pixels)
    weight = pixels.norm(dim=-1) * (pixels.sum(-1) > EPS)

    def near(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (up to 4) candidate bins of each value and whether each is within one bin width (P, 4)."""
        k = torch.floor((values.clamp(-2 * boundary, 2 * boundary) + boundary) / step).long()
        cand = k[..., None] + torch.arange(-1, 3)
        ok = (cand >= 0) & (cand < bins)
        d = (values[..., None] - centres[cand.clamp(0, bins - 1)]).abs()
        return cand.clamp(0, bins - 1), ok & (d <= step) & (d != 0)

    cu, in_u = near(uv[..., 0])
    cv, in_v = near(uv[..., 1])
    rows = (bins - 1 - cv)[..., :, None]  # v runs down the rows
    index = (torch.arange(b)[:, None, None, None] * bins + rows) * bins + cu[..., None, :]
    w = weight[..., None, None] * (in_v[..., :, None] & in_u[..., None, :])
    hist = torch.bincount(index.flatten(), w.flatten(), minlength=b * bins * bins).view(b, bins, bins)
    return torch.sqrt(hist / (hist.sum((1, 2), keepdim=True) + EPS))


def edge_image(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> the mean absolute difference of each pixel to its 8 neighbours (edges replicated)."""
    padded = Fn.pad(images, (1, 1, 1, 1), mode="replicate")
    h, w = images.shape[-2:]
    total = torch.zeros_like(images)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                total = total + (images - padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]).abs()
    return total / 8


def histogram_features(images: torch.Tensor, bins: int = 64, boundary: float = BOUNDARY) -> torch.Tensor:
    """Linear raw images (B, 3, H, W) or (3, H, W) in [0, 1] -> (B, 2, bins, bins) float64: the histogram of the
    image and of its edge image (Sec. 3.1)."""
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != 3:
        raise PaperzooError(f"C5 histograms need RGB images (B, 3, H, W), got shape {tuple(images.shape)}")
    images = images.to(torch.float64)
    flat = lambda x: x.flatten(2).transpose(1, 2)
    return torch.stack([log_chroma_histogram(flat(images), bins, boundary),
                        log_chroma_histogram(flat(edge_image(images)), bins, boundary)], 1)


def cyclic_additional(n: int, m: int, group: int | None = None) -> torch.Tensor:
    """(n, m) indices of each query's m input histograms: itself, then the next m - 1 images of its camera group
    in cyclic order (groups are consecutive blocks of ``group`` images, default all ``n``; a group smaller than m
    repeats images)."""
    group = group or n
    i = torch.arange(n)
    start = (i // group) * group
    size = torch.clamp(n - start, max=group)
    return start[:, None] + (i - start)[:, None].add(torch.arange(m)) % size[:, None]


def c5_inputs(hists: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per-image histograms (N, 2, n, n) and an (B, m) index (query first) -> the model input (B, m, 2, n, n)."""
    return hists[index].float()


def angular_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between RGB vectors (..., 3) (the paper's metric; cosine clamped to [0, 1])."""
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(EPS)
    return torch.rad2deg(torch.acos(cos.clamp(0.0, 1.0)))


# ------------------------------------------------------------------------------------------ the network
def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="replicate")
    nn.init.kaiming_normal_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class DoubleConv(nn.Module):
    """conv-act, conv-[norm]-act: the building block of every encoder, bottleneck and decoder stage."""

    def __init__(self, cin: int, cout: int, mid: int | None = None, norm: str | None = None) -> None:
        super().__init__()
        mid = mid or cout
        self.conv1, self.conv2 = _conv(cin, mid), _conv(mid, cout)
        if norm == "batch":
            self.norm: nn.Module = nn.BatchNorm2d(cout)
        elif norm == "instance":
            self.norm = nn.InstanceNorm2d(cout, affine=False)
        else:
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = Fn.leaky_relu(self.conv1(x))
        return Fn.leaky_relu(self.norm(self.conv2(x)))


class CrossPooledEncoder(nn.Module):
    """m encoder streams; after each block the streams' maps are max-pooled across streams and every stream
    merges that pooled map with its own by a 1x1 conv (Fig. 3). Returns the last pooled map and the query
    stream's pre-pooling maps (the decoders' skip connections), deepest first."""

    def __init__(self, m: int, widths: list[int], in_chans: int = 4) -> None:
        super().__init__()
        self.m = m
        ins = [in_chans, *widths[:-1]]
        self.streams = nn.ModuleList(
            nn.ModuleList(DoubleConv(ins[j], widths[j], norm="batch" if j % 2 == 0 else None) for j in range(len(widths)))
            for _ in range(m))
        self.merge = nn.ModuleList(
            nn.ModuleList(_conv(2 * w, w, 1) for w in widths[:-1]) for _ in range(m)) if m > 1 else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        latents = list(x.unbind(1))  # m streams of (B, C, n, n); stream 0 is the query
        skips = []
        depth = len(self.streams[0])
        pooled = None
        for j in range(depth):
            for i in range(self.m):
                y = self.streams[i][j](latents[i])
                if i == 0:
                    skips.append(y)
                latents[i] = Fn.max_pool2d(y, 2)
            if self.merge is None:
                continue
            pooled = torch.stack(latents, -1).amax(-1)  # cross-pooling over the m streams
            if j < depth - 1:
                latents = [Fn.leaky_relu(self.merge[i][j](torch.cat([latents[i], pooled], 1))) for i in range(self.m)]
        return (latents[0] if pooled is None else pooled), skips[::-1]


class MapDecoder(nn.Module):
    """U-Net decoder producing one map (F, B or G): upsample x2 (bilinear), concatenate the query's skip map,
    a double conv with InstanceNorm; a final 3x3 conv without activation."""

    def __init__(self, out_chans: int, widths: list[int], bottleneck: int) -> None:
        super().__init__()
        blocks, cin = [], bottleneck
        skips = widths[::-1]
        for k, skip in enumerate(skips):
            out = skips[k + 1] if k + 1 < len(skips) else skips[-1] // 2
            blocks.append(DoubleConv(cin + skip, out, mid=skip, norm="instance"))
            cin = out
        self.blocks = nn.ModuleList(blocks)
        self.out = _conv(cin, out_chans)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block, skip in zip(self.blocks, skips):
            x = Fn.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
            x = block(torch.cat([skip, x], 1))
        return self.out(x)


class C5(nn.Module):
    """The C5 model. ``forward(hists)``: (B, m, 2, n, n) histograms (query first; ``histogram_features``) ->
    dict with ``rgb`` (B, 3, unit norm), ``uv`` (B, 2), heat map ``P`` (B, n, n), filter ``F`` (B, 2, n, n),
    bias ``B`` (B, n, n) and gain ``G`` (B, n, n, or None)."""

    def __init__(self, bins: int = 64, m: int = 7, learn_gain: bool = False, width: int = 8, max_width: int = 32,
                 depth: int = 4, boundary: float = BOUNDARY) -> None:
        super().__init__()
        if bins < 2 ** depth or bins % 2 ** depth:
            raise PaperzooError(f"C5 needs a histogram size divisible by 2^depth = {2 ** depth}, got {bins}")
        if m < 1:
            raise PaperzooError(f"C5 needs m >= 1 input histograms, got {m}")
        self.bins, self.m, self.learn_gain, self.boundary = bins, m, learn_gain, boundary
        widths = [min(width * 2 ** j, max_width) for j in range(depth)]
        self.encoder = CrossPooledEncoder(m, widths)
        self.bottleneck = DoubleConv(widths[-1], widths[-1], mid=min(width * 2 ** depth, max_width))
        names = ["F", "B"] + (["G"] if learn_gain else [])
        self.decoders = nn.ModuleDict({k: MapDecoder(2 if k == "F" else 1, widths, widths[-1]) for k in names})
        # the two coordinate channels appended to every histogram, in [0, 1]: u along columns, v up the rows
        j = torch.arange(bins, dtype=torch.float64) / (bins - 1)
        coords = torch.stack([j.expand(bins, bins), j.flip(0)[:, None].expand(bins, bins)]).float()
        self.register_buffer("coords", coords, persistent=False)
        # heat-map coordinates of the soft-argmax (Eq. 5), in log-chroma units
        centre = (torch.arange(bins, dtype=torch.float32) - (bins - 1) / 2) * (2 * boundary / bins)
        self.register_buffer("u_of_bin", centre.expand(bins, bins).clone(), persistent=False)
        self.register_buffer("v_of_bin", centre.flip(0)[:, None].expand(bins, bins).clone(), persistent=False)

    def forward(self, hists: torch.Tensor) -> dict[str, Any]:
        if hists.ndim != 5 or hists.shape[1:] != (self.m, 2, self.bins, self.bins):
            raise PaperzooError(f"C5 (m={self.m}, {self.bins} bins) takes histograms of shape (B, {self.m}, 2, "
                                f"{self.bins}, {self.bins}), got {tuple(hists.shape)}")
        b = hists.shape[0]
        x = torch.cat([hists, self.coords.expand(b, self.m, 2, self.bins, self.bins)], 2)
        latent, skips = self.encoder(x)
        latent = self.bottleneck(latent)
        maps = {k: dec(latent, skips) for k, dec in self.decoders.items()}
        filt, bias = maps["F"], maps["B"][:, 0]
        gain = maps["G"][:, 0] if "G" in maps else None
        query = hists[:, 0]
        conv = torch.fft.irfft2(torch.fft.rfft2(query) * torch.fft.rfft2(filt), s=query.shape[-2:]).sum(1)
        logits = (conv if gain is None else gain * conv) + bias
        p = torch.softmax(logits.clamp(-100, 100).flatten(1), 1).view_as(logits)
        uv = torch.stack([(p * self.u_of_bin).sum((1, 2)), (p * self.v_of_bin).sum((1, 2))], 1)
        return {"rgb": uv_to_rgb(uv), "uv": uv, "P": p, "F": filt, "B": bias, "G": gain}


SOBEL_U = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])


def smoothness(maps: torch.Tensor) -> torch.Tensor:
    """Mean squared Sobel responses in u and v of (B, n, n) maps (the regulariser of Eq. 9; no padding)."""
    x = maps[:, None]
    return sum((Fn.conv2d(x, k.to(x)[None, None]) ** 2).mean() for k in (SOBEL_U, SOBEL_U.T))


def c5_loss(out: dict[str, Any], target_rgb: torch.Tensor, lambda_f: float = 0.15, lambda_b: float = 0.02,
            lambda_g: float = 0.02) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 9: mean angular error (degrees) + lambda_F * smooth(F) + lambda_B * smooth(B) + lambda_G * smooth(G).
    The cosine is shrunk by 1e-7 before acos, as in the authors' training code, so the gradient stays finite at
    a perfect estimate."""
    pred = out["rgb"]
    cos = (pred * target_rgb).sum(-1) / (pred.norm(dim=-1) * target_rgb.norm(dim=-1)).clamp_min(EPS)
    angle = torch.rad2deg(torch.acos(cos.clamp(-1, 1) * 0.9999999)).mean()
    smooth = lambda_f * (smoothness(out["F"][:, 0]) + smoothness(out["F"][:, 1])) + lambda_b * smoothness(out["B"])
    if out["G"] is not None:
        smooth = smooth + lambda_g * smoothness(out["G"])
    return angle + smooth, {"angular": angle.detach(), "smoothness": smooth.detach()}


@register_model(paper="c5", task="illuminant", input_size=(2, 64, 64), num_classes=3, mean=(0.0,), std=(1.0,),
                notes="input: (B, m, 2, 64, 64) log-chroma histograms of the query and m-1 images of its camera")
def c5(num_classes: int = 3, bins: int = 64, m: int = 7, learn_gain: bool = False, **kwargs: Any) -> C5:
    """C5 as released (m = 7 histograms of 64 x 64 bins; ``learn_gain=True`` for the model with G). ``num_classes``
    is not used: the output is an illuminant colour."""
    return C5(bins=bins, m=m, learn_gain=learn_gain, **kwargs)


@register_converter("c5", "official")
def _from_official(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The authors' checkpoints (C5_m_7_h_64.pth, C5_m_7_h_64_w_G.pth) -> our names."""
    out = {}
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        k = (k.replace("encoder.encoders.", "encoder.streams.").replace("encoder.merge_layers.", "encoder.merge.")
             .replace(".double_conv_1.conv.", ".conv1.").replace(".double_conv_2.conv.", ".conv2.")
             .replace(".double_conv_2.normalization.", ".norm.").replace("bottleneck.double_conv_1.conv.", "bottleneck.conv1.")
             .replace("bottleneck.double_conv_2.conv.", "bottleneck.conv2.").replace(".final_block.conv.", ".out."))
        if k.startswith("encoder.merge."):
            k = k.replace(".conv.", ".")
        for name in ("B", "F", "G"):
            if k.startswith(f"decoder_{name}."):
                k = f"decoders.{name}." + k[len(f"decoder_{name}."):].replace("decoder.", "blocks.", 1)
        out[k] = v
    return out
