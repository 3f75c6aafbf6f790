"""``ablations latents`` and ``ablations data download``: data sets prepared once."""

from __future__ import annotations

from pathlib import Path

import typer

from ablations.cli.common import app, console, data_app
from mambabench.errors import UserError


@app.command("latents")
def latents_command(
    data: str = typer.Option(..., "--data", help="cifar10 | celeba | imagenet | builtin."),
    vae: Path = typer.Option(..., "--vae", help="Local diffusers AutoencoderKL folder."),
    res: int = typer.Option(256, "--res", help="Image size in pixels."),
    out: Path = typer.Option(..., "--out"),
    data_root: Path = typer.Option(None, "--data-root"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Encode a data set once into latent shards for `--data latents:OUT` (resumes if interrupted)."""
    from ablations.data import open_dataset
    from ablations.latents import load_vae, write_latent_shards

    folder = write_latent_shards(open_dataset(data, data_root, size=res), load_vae(vae, device), out)
    console.print(f"latents in {folder}")


@data_app.command("download")
def download_command(name: str, root: Path = typer.Option(None, "--root")) -> None:
    """Download a data set that has a public direct link (cifar10)."""
    from ablations.data import default_data_root, download_cifar10

    if name != "cifar10":
        raise UserError(f"{name} has no direct download; `ablations list` says where to get it")
    folder = download_cifar10(root or default_data_root())
    console.print(f"CIFAR-10 in {folder}")
