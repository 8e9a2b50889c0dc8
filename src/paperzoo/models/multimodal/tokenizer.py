"""Text to token ids for the vision-and-language models, through Hugging Face ``tokenizers`` (no hand-written BPE).

* ``ClipTokenizer.from_bpe(path)``: CLIP's byte-level BPE (lower-cased, 49,408 tokens with [SOS] 49406 and [EOS]
  49407) assembled in ``tokenizers`` from OpenAI's merges file ``bpe_simple_vocab_16e6.txt.gz`` (the file open_clip's
  wheel ships; ``from_bpe()`` without a path finds it there). Sequences are ``[SOS] tokens [EOS] 0 ...`` cut to the
  context length with [EOS] kept last -- OpenAI's ``clip.tokenize``.
* ``WordTokenizer(words)``: a word-level vocabulary (``tokenizers``' ``WordLevel``) for the miniatures, whose captions
  use a few dozen words: 0 is padding, 1 unknown, then the words, then [SOS] and [EOS] (the highest id, so CLIP's
  argmax pooling finds it). ``decode`` turns ids back into words for the captioners.
"""
from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from ...errors import PaperzooError

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (the alphabet of byte-level BPE), in its order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars)))


class _Padded:
    """Shared call: a list of strings -> LongTensor (n, context_length) of ``[SOS] ids [EOS] 0 ...``."""

    context_length: int
    sot_id: int
    eot_id: int

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        n = context_length or self.context_length
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for i, ids in enumerate(self.encode_ids(texts)):
            ids = [self.sot_id, *ids[: n - 2], self.eot_id]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


class ClipTokenizer(_Padded):
    """CLIP's BPE in Hugging Face ``tokenizers`` (see the module docstring)."""

    def __init__(self, tokenizer, context_length: int = 77) -> None:
        self.tokenizer, self.context_length = tokenizer, context_length
        self.sot_id, self.eot_id = tokenizer.token_to_id(SOT), tokenizer.token_to_id(EOT)
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def from_bpe(cls, path: str | Path | None = None, context_length: int = 77) -> ClipTokenizer:
        from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

        if path is None:
            try:
                import open_clip
            except ImportError:
                raise PaperzooError("CLIP's BPE merges file is needed: pass the path of bpe_simple_vocab_16e6.txt.gz "
                                    "(OpenAI's CLIP repository; open_clip's wheel ships it)") from None
            path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
        path = Path(path)
        if not path.exists():
            raise PaperzooError(f"CLIP BPE merges file not found: {path}")
        lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")[1: 49152 - 256 - 2 + 1]
        merges = [tuple(line.split()) for line in lines]
        alphabet = list(_bytes_to_unicode().values())
        vocab = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + [SOT, EOT]
        bpe = models.BPE({t: i for i, t in enumerate(vocab)}, merges, continuing_subword_prefix="",
                         end_of_word_suffix="</w>", unk_token=EOT, fuse_unk=False)
        tok = Tokenizer(bpe)
        tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                               normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False)])
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([SOT, EOT])
        return cls(tok, context_length)

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return super().encode_ids([" ".join(t.strip().split()) for t in texts])


def _split_punctuation(text: str) -> str:
    return text.replace(",", " , ").replace(".", " . ").replace("?", " ? ")


class WordTokenizer(_Padded):
    """A word-level vocabulary (see the module docstring). ``words`` in order; duplicates are dropped."""

    PAD, UNK = "<pad>", "<unk>"

    def __init__(self, words: Iterable[str], context_length: int = 32) -> None:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

        words = list(dict.fromkeys(w.lower() for w in words if w))
        self.words = [self.PAD, self.UNK, *words, SOT, EOT]
        vocab = {w: i for i, w in enumerate(self.words)}
        tok = Tokenizer(models.WordLevel(vocab, unk_token=self.UNK))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        self.tokenizer, self.context_length = tok, context_length
        self.sot_id, self.eot_id, self.pad_id = vocab[SOT], vocab[EOT], 0
        self.vocab_size = len(self.words)

    @classmethod
    def from_texts(cls, texts: Iterable[str], context_length: int = 32) -> WordTokenizer:
        """The vocabulary of ``texts`` (punctuation split off words), in order of first appearance."""
        return cls((w for t in texts for w in _split_punctuation(t).split()), context_length)

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return super().encode_ids([_split_punctuation(t) for t in texts])

    def decode(self, ids: Sequence[int] | torch.Tensor, strip: bool = True) -> str:
        """Ids -> words, stopping at [EOS] and skipping padding and [SOS]."""
        out = []
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            if i == self.eot_id:
                break
            if i not in (self.pad_id, self.sot_id):
                out.append(self.words[i])
        return " ".join(out)


def scene_words() -> list[str]:
    """Every word the synthetic scenes' captions use (``paperzoo.data.shapes``), plus a few prompt words."""
    from ...data.shapes import CLASSES, COLORS

    grammar = ["a", "an", "empty", "scene", "small", "medium", "large", "in", "the", "at", "on", "top", "bottom",
               "left", "right", "center", "and", ",", "."]
    prompts = ["photo", "of", "picture", "shape", "drawing", "object", "what", "is", "?"]
    return [*grammar, *COLORS, *CLASSES, *prompts]  # new words go last: earlier ids stay put


def scene_tokenizer(context_length: int = 32) -> WordTokenizer:
    """The word-level tokenizer of the synthetic scenes' captions."""
    return WordTokenizer(scene_words(), context_length)
