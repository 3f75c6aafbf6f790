"""``ablations latents`` and ``ablations data download``: data sets prepared once."""

from __future__ import annotations

from pathlib import Path

import typer

from ablations.cli.common import app, console, data_app
from mambabench.errors import UserError


@app.command("latents")
def latents_command(
    data: str = typer.Option(
        ..., "--data", help="cifar10 | celeba | imagenet | builtin; captions:DIR | wds:PATTERN | captioned-shapes."
    ),
    vae: Path = typer.Option(..., "--vae", help="Local diffusers AutoencoderKL folder."),
    text_encoder: Path = typer.Option(
        None,
        "--text-encoder",
        help="Caption data: T5 folder (default $MAMBABENCH_TEXT_ENCODER); embeddings in OUT/captions.",
    ),
    tokens: int = typer.Option(120, "--tokens", help="Caption data: tokens a caption (PixArt-alpha: 120)."),
    res: int = typer.Option(256, "--res", help="Image size in pixels."),
    out: Path = typer.Option(..., "--out"),
    data_root: Path = typer.Option(None, "--data-root"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Encode a data set once into latent shards for `--data latents:OUT` (resumes if interrupted); a caption
    data set's captions also into T5 embeddings in OUT/captions (PixArt-alpha's feature extraction)."""
    from ablations.caption_data import captions_of
    from ablations.data import open_dataset
    from ablations.latents import load_vae, write_latent_shards

    dataset = open_dataset(data, data_root, size=res)
    captions = captions_of(dataset)
    encoder = None
    if captions is not None:  # the encoder folder is checked before any image is encoded
        from ablations.text_encoder import TextEncoder

        encoder = TextEncoder(text_encoder, device)
    folder = write_latent_shards(dataset, load_vae(vae, device), out)
    console.print(f"latents in {folder}")
    if encoder is not None:
        from ablations.text_encoder import write_caption_cache

        cache = write_caption_cache(captions, encoder, folder / "captions", tokens, log=console.print)
        console.print(f"{len(captions)} caption embeddings ({tokens} tokens, T5 width {encoder.channels}) in {cache}")


@data_app.command("download")
def download_command(name: str, root: Path = typer.Option(None, "--root")) -> None:
    """Download a data set that has a public direct link (cifar10)."""
    from ablations.data import default_data_root, download_cifar10

    if name != "cifar10":
        raise UserError(f"{name} has no direct download; `ablations list` says where to get it")
    folder = download_cifar10(root or default_data_root())
    console.print(f"CIFAR-10 in {folder}")
