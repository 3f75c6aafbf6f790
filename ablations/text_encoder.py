"""PixArt-alpha's text encoder (T5 v1.1 XXL) and the on-disk cache of caption embeddings that training reads.

PixArt-alpha encodes each caption once, before training (its ``tools/extract_features.py``), with
``T5EncoderModel`` from a local folder: the tokenizer pads and truncates to 120 tokens with the end-of-text
token added (``max_length=120, padding="max_length", truncation=True, add_special_tokens=True``), and the
embedding is the encoder's ``last_hidden_state`` (120 x 4096) with the tokenizer's attention mask, both kept.
We do the same through ``transformers``; the model keeps taking ``(batch, tokens, channels)`` embeddings and
a bool mask (``zoo`` never sees a tokenizer). On CUDA the encoder runs in bf16 (the weights are 9.5 GB in
bf16), on a CPU in float32.

The folder (``--text-encoder DIR``, else ``$MAMBABENCH_TEXT_ENCODER``) is one of the published layouts:

- a T5 folder with ``config.json``, the weights and the tokenizer files: ``google/t5-v1_1-xxl``, or the
  ``t5-v1_1-xxl/`` folder of ``PixArt-alpha/PixArt-alpha``;
- a diffusers pipeline folder with ``text_encoder/`` and ``tokenizer/`` (``PixArt-alpha/PixArt-XL-2-512x512``).

The tokenizer loads from ``tokenizer.json`` when the folder has one, else from ``spiece.model`` through
sentencepiece (the google and PixArt folders ship only that; our choice: the sentencepiece vocabulary as a
``T5Tokenizer`` with T5's 100 extra ids, which needs no protobuf conversion).

The cache (``write_caption_cache``): ``captions-NNNNN.pt`` shards of ``{"embeddings": bfloat16 (n, tokens,
channels), "masks": bool (n, tokens)}`` in caption order, ``identity.json`` (written first: the encoder, the
token count and a hash of the caption list; a folder built from other captions or another encoder is never
mixed in) and ``manifest.json`` written last. Shards already on disk are kept, so an interrupted build
resumes. bfloat16 (our choice; PixArt stores float32 ``.npz`` files) halves the disk: 0.98 MB a caption at
120 x 4096. ``CaptionCache`` reads the shards memory-mapped and looks embeddings up by caption index.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor

from mambabench import settings
from mambabench.errors import UserError
from mambabench.files import atomic_save, atomic_write_json, claim

PIXART_TOKENS = 120  # PixArt-alpha's max_length
DOWNLOAD = (
    "download google/t5-v1_1-xxl (`huggingface-cli download google/t5-v1_1-xxl --local-dir DIR`) or the "
    "t5-v1_1-xxl folder of PixArt-alpha/PixArt-alpha (`huggingface-cli download PixArt-alpha/PixArt-alpha "
    "--include 't5-v1_1-xxl/*' --local-dir DIR`), then pass --text-encoder DIR (or set MAMBABENCH_TEXT_ENCODER)"
)


class TextEncoderMissing(UserError, FileNotFoundError):
    """No usable T5 folder; the message says what to download and where to put it."""


def _folders(path: Path) -> tuple[Path, Path]:
    """(encoder folder, tokenizer folder) of a T5 folder or a diffusers pipeline folder."""
    if (path / "text_encoder" / "config.json").is_file():
        return path / "text_encoder", path / "tokenizer" if (path / "tokenizer").is_dir() else path / "text_encoder"
    return path, path


TINY = "tiny-t5"  # --text-encoder tiny-t5: a tiny random T5 made here (smoke presets, tests)


def build_tiny_t5(folder: str | Path, captions: list[str] | None = None, channels: int = 32) -> Path:
    """A tiny T5 encoder (T5 v1.1's gated-GELU architecture: 2 layers, width ``channels``, 4 heads) with
    random weights (seed 0) and a sentencepiece vocabulary trained on ``captions`` (default: the
    captioned-shapes captions), saved with ``save_pretrained`` into ``folder``. It exercises every line of the
    text path at CPU scale; its embeddings carry the words (each token its own vector), not T5's knowledge."""
    import io

    import sentencepiece
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    folder = Path(folder)
    if captions is None:
        from ablations.caption_data import CaptionedShapes

        captions = CaptionedShapes(size=8, length=400).captions
    model_file = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(captions),
        model_writer=model_file,
        vocab_size=64,
        hard_vocab_limit=False,
        model_type="word",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    processor = sentencepiece.SentencePieceProcessor(model_proto=model_file.getvalue())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    try:
        tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    except TypeError:  # transformers 4: the sentencepiece tokenizer reads a file
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spiece.model").write_bytes(model_file.getvalue())
        tokenizer = T5Tokenizer(vocab_file=str(folder / "spiece.model"), extra_ids=0, legacy=False)
    config = T5Config(
        vocab_size=len(vocab),
        d_model=channels,
        d_kv=channels // 4,
        d_ff=2 * channels,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = T5EncoderModel(config)
        with torch.no_grad():  # T5's init scales embeddings to unit-ish RMS, which T5 outputs also have
            model.shared.weight.normal_(0, 1.0)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _tiny_folder() -> Path:
    folder = settings.cache_dir() / "text-encoders" / TINY
    if not (folder / "config.json").is_file():
        with claim(folder.parent / f".{TINY}.lock", True):
            if not (folder / "config.json").is_file():  # built whole beside, then renamed: never half a folder
                partial = folder.with_name(f"{TINY}.partial")
                shutil.rmtree(partial, ignore_errors=True)
                os.replace(build_tiny_t5(partial), folder)
    return folder


def resolve_text_encoder(path: str | Path | None) -> Path:
    """The T5 folder ``path`` (else ``$MAMBABENCH_TEXT_ENCODER``), checked to be a T5 encoder with a tokenizer;
    ``tiny-t5`` is the tiny T5 of ``build_tiny_t5``, made once under ``$MAMBABENCH_CACHE/text-encoders``."""
    chosen = path or settings.text_encoder()
    if str(chosen) == TINY:
        return _tiny_folder()
    if not chosen:
        raise TextEncoderMissing(
            f"this run encodes captions with PixArt-alpha's T5 and no folder was given: {DOWNLOAD}; at CPU scale "
            "--text-encoder tiny-t5 is a tiny random T5 made here"
        )
    folder = Path(chosen).expanduser()
    encoder, tokenizer = _folders(folder)
    config = encoder / "config.json"
    if not config.is_file():
        raise TextEncoderMissing(f"no T5 text encoder at {folder} (no config.json): {DOWNLOAD}")
    try:
        info = json.loads(config.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{config} is not JSON ({error.msg}); {DOWNLOAD}") from None
    kind = info.get("model_type")
    if kind not in ("t5", "umt5", "mt5"):
        what = kind or ", ".join(info.get("architectures") or []) or "an unknown model"
        raise UserError(f"{folder} holds {what}, not a T5 encoder; {DOWNLOAD}")
    if not any((tokenizer / name).is_file() for name in ("tokenizer.json", "spiece.model")):
        raise TextEncoderMissing(f"{tokenizer} has no T5 tokenizer (tokenizer.json or spiece.model); {DOWNLOAD}")
    return folder


def text_encoder_identity(path: str | Path) -> str:
    """``t5:<hash>`` of the folder's config.json and tokenizer files: what the caption embeddings depend on
    (two copies of the same model in different places have one identity); ``tiny-t5`` is itself."""
    if str(path) == TINY:  # built the same way everywhere (seed 0)
        return TINY
    encoder, tokenizer = _folders(Path(path).expanduser())
    digest = hashlib.sha256()
    for file in (encoder / "config.json", tokenizer / "tokenizer.json", tokenizer / "spiece.model"):
        if file.is_file():
            digest.update(file.name.encode() + file.read_bytes())
    weights = sorted(p for p in encoder.iterdir() if p.suffix in (".safetensors", ".bin"))
    digest.update(json.dumps([(p.name, p.stat().st_size) for p in weights]).encode())
    return "t5:" + digest.hexdigest()[:16]


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer, T5Tokenizer

    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    try:
        return T5Tokenizer(vocab=vocab, extra_ids=100)  # transformers >= 5: the tokenizers-backed T5 tokenizer
    except TypeError:  # transformers 4: the sentencepiece tokenizer reads the file itself
        return T5Tokenizer(vocab_file=str(folder / "spiece.model"), legacy=False)


class TextEncoder:
    """T5 encoder + tokenizer from a local folder: ``encode(captions, tokens)`` -> (embeddings, mask)."""

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu"):
        try:
            from transformers import T5EncoderModel
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # a bar per weight file clutters every command's output
        except ImportError as error:
            raise UserError(
                "the text encoder needs transformers and sentencepiece: pip install -e '.[text]'"
            ) from error
        self.folder = resolve_text_encoder(path)
        encoder, tokenizer = _folders(self.folder)
        self.device = torch.device(device)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = T5EncoderModel.from_pretrained(encoder, dtype=dtype, local_files_only=True).to(self.device)
        self.model.eval().requires_grad_(False)
        self.tokenizer = _tokenizer(tokenizer)
        self.channels = int(self.model.config.d_model)
        self.identity = text_encoder_identity(self.folder)

    @torch.no_grad()
    def encode(self, captions: list[str], tokens: int = PIXART_TOKENS) -> tuple[Tensor, Tensor]:
        """(len, tokens, channels) float32 last hidden states and a (len, tokens) bool mask, on the CPU."""
        batch = self.tokenizer(
            list(captions),
            max_length=tokens,
            padding="max_length",
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return hidden.float().cpu(), mask.bool().cpu()


def captions_digest(captions: list[str]) -> str:
    return hashlib.sha256("\n".join(captions).encode()).hexdigest()[:16]


def cache_key(captions: list[str], identity: str, tokens: int) -> str:
    """The name of a caption cache under ``$MAMBABENCH_CACHE/captions/``: captions, encoder and token count."""
    return hashlib.sha256(f"{identity}|{tokens}|{captions_digest(captions)}".encode()).hexdigest()[:16]


def default_cache_folder(captions: list[str], identity: str, tokens: int) -> Path:
    return settings.cache_dir() / "captions" / cache_key(captions, identity, tokens)


def write_caption_cache(
    captions: list[str],
    encoder: TextEncoder,
    out: str | Path,
    tokens: int = PIXART_TOKENS,
    shard_size: int = 256,
    batch: int = 32,
    log=None,
) -> Path:
    """Encode ``captions`` into ``out`` (module doc); resumes an interrupted build, refuses a folder of other
    captions or another encoder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = {"encoder": encoder.identity, "tokens": tokens, "channels": encoder.channels}
    identity.update(count=len(captions), captions=captions_digest(captions), shard_size=shard_size)
    known = out / "identity.json"
    if known.is_file():
        saved = json.loads(known.read_text())
        if saved != identity:
            words = {"count": "other captions", "captions": "other captions", "encoder": "another text encoder"}
            words.update(channels="another text encoder", tokens="another token count", shard_size="another shard size")
            changed = ", ".join(dict.fromkeys(words[k] for k in identity if saved.get(k) != identity[k]))
            raise UserError(f"{out} holds the caption embeddings of {changed}; delete it or write this cache elsewhere")
    else:
        atomic_write_json(known, identity, indent=2)
    shards = (len(captions) + shard_size - 1) // shard_size
    for shard in range(shards):
        path = out / f"captions-{shard:05d}.pt"
        if path.exists():
            continue
        part = captions[shard * shard_size : (shard + 1) * shard_size]
        embeddings, masks = [], []
        for start in range(0, len(part), batch):
            e, m = encoder.encode(part[start : start + batch], tokens)
            embeddings.append(e.to(torch.bfloat16))
            masks.append(m)
        if log is not None and (shard == 0 or shard + 1 == shards):
            log(f"caption cache: encoding {len(captions)} captions into {out} ({shard + 1}/{shards} shards)")
        atomic_save({"embeddings": torch.cat(embeddings), "masks": torch.cat(masks)}, path)
    atomic_write_json(out / "manifest.json", {**identity, "shards": shards}, indent=2)
    return out


def cache_ready(folder: str | Path) -> bool:
    return (Path(folder) / "manifest.json").is_file()


class CaptionCache:
    """The embeddings of ``write_caption_cache``'s folder: ``lookup(indices)`` -> (embeddings, mask)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            raise UserError(f"{self.folder}: no finished caption cache (no manifest.json); build it again")
        self.manifest = json.loads(manifest.read_text())
        self.tokens, self.channels = int(self.manifest["tokens"]), int(self.manifest["channels"])
        self.count, self.shard_size = int(self.manifest["count"]), int(self.manifest["shard_size"])
        self._shards: dict[int, dict[str, Tensor]] = {}

    def __len__(self) -> int:
        return self.count

    def _shard(self, shard: int) -> dict[str, Tensor]:
        if shard not in self._shards:
            path = self.folder / f"captions-{shard:05d}.pt"
            self._shards[shard] = torch.load(path, mmap=True, weights_only=True)
        return self._shards[shard]

    def lookup(self, indices: Tensor | list[int]) -> tuple[Tensor, Tensor]:
        """(B, tokens, channels) float32 embeddings and (B, tokens) bool masks of captions ``indices``."""
        rows = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]
        bad = [i for i in rows if not 0 <= i < self.count]
        if bad:
            raise UserError(f"caption {bad[0]} is not in the cache at {self.folder} ({self.count} captions)")
        out_e, out_m = [], []
        for i in rows:
            shard = self._shard(i // self.shard_size)
            out_e.append(shard["embeddings"][i % self.shard_size].float())
            out_m.append(shard["masks"][i % self.shard_size])
        return torch.stack(out_e), torch.stack(out_m)


def open_caption_cache(
    captions: list[str],
    tokens: int,
    channels: int,
    encoder: str | Path | None = None,
    folder: str | Path | None = None,
    device: str | torch.device = "cpu",
    log=None,
) -> CaptionCache:
    """The cache of ``captions`` at ``tokens`` tokens, built on first use: in ``folder`` (``ablations latents``
    puts it beside the latents), else under ``$MAMBABENCH_CACHE/captions/`` named by the captions, the encoder
    and the token count, so every run on the same data shares one. A finished cache in ``folder`` needs no
    encoder; a cache whose width or token count is not the model's is a ``UserError`` naming the fix."""
    if folder is None or not cache_ready(folder):
        path = resolve_text_encoder(encoder)
        folder = Path(folder or default_cache_folder(captions, text_encoder_identity(path), tokens))
        with claim(folder.parent / f".{folder.name}.lock"):  # DDP ranks, table jobs: one builds, the others wait
            if not cache_ready(folder):
                write_caption_cache(captions, TextEncoder(path, device), folder, tokens, log=log)
    cache = CaptionCache(folder)
    if cache.count != len(captions):
        raise UserError(f"the caption cache at {folder} holds {cache.count} captions, the data set {len(captions)}")
    if cache.tokens != tokens:
        raise UserError(
            f"the caption cache at {folder} has {cache.tokens} tokens a caption, the model takes {tokens}: "
            "build it again for this model (delete the folder) or --set caption_tokens to match"
        )
    if cache.channels != channels:
        raise UserError(
            f"the text encoder gives {cache.channels}-channel embeddings, the model takes {channels} "
            f"(PixArt-alpha's T5 XXL: 4096); --set caption_channels={cache.channels} or use another --text-encoder"
        )
    return cache
