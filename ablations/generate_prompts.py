"""Prompts in, images out: a text model's run (PixArt-alpha, T2MD) sampled on a prompt file into GenEval's
folder layout, the input of GenEval's ``evaluate_images.py`` (and of ``ablations.geneval``).

The prompt file is GenEval's ``evaluation_metadata.jsonl`` (one JSON object a line with at least
``prompt``; the whole object is kept) or plain text, one prompt a line (blank lines skipped). Prompt i
(0-based, in file order) gets ``OUT/<i:05d>/metadata.jsonl`` (its metadata line: the JSON object, or
``{"prompt": ...}`` for a text file) and ``n`` images ``OUT/<i:05d>/samples/<j:05d>.png`` (five digits, as
GenEval's own generation script names them). The prompts are encoded by the same T5 as the run's captions
(``ablations.text_encoder``: the run's ``text_encoder``, else ``--text-encoder``, else
``$MAMBABENCH_TEXT_ENCODER``), with the model's token count and mask; classifier-free guidance is against the
model's own null caption (``y_embedding``; for the released PixArt-alpha the checkpoint's), with the
prompt's mask on both halves as PixArt-alpha's code does.

Resumable: a sample is written whole (atomically) or not at all and a rerun skips samples already on disk.
Image j of prompt i starts from noise seeded by (seed, i, j) alone, so with the deterministic samplers (ddim,
dpm-solver) a resumed or re-batched run makes the same images. Our choices where GenEval is silent:
five-digit names, no ``grid.png`` per prompt (GenEval reads only ``samples/``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from ablations.diffusion import GaussianDiffusion
from ablations.generate import to_uint8
from ablations.latents import decode, load_vae
from ablations.run_folder import load_run_model
from ablations.samplers import guided, sample
from mambabench.errors import UserError
from mambabench.files import atomic_path, atomic_write_text


def read_prompts(path: str | Path) -> list[dict]:
    """The metadata of every prompt of ``path`` (module doc); a file of another shape is a ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompt file {path} not found; give one prompt a line, or GenEval's evaluation_metadata.jsonl")
    lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    if not lines:
        raise UserError(f"{path} holds no prompts")
    as_json = path.suffix == ".jsonl" or lines[0][1].lstrip().startswith("{")
    rows = []
    for number, line in lines:
        if not as_json:
            rows.append({"prompt": " ".join(line.split())})
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(
                f"{path}:{number}: not a JSON line; a .jsonl prompt file is GenEval's evaluation_metadata.jsonl "
                "(one JSON object with a 'prompt' a line), else give one prompt a line in a .txt file"
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise UserError(f'{path}:{number}: expected a JSON object with a non-empty "prompt", got {line[:80]}')
        rows.append(row)
    return rows


def prompt_folder_name(sampler: str, steps: int, n: int, cfg: float, res: int) -> str:
    return f"{sampler}-{steps}steps-cfg{cfg:g}-{res}px-n{n}"


def generate_from_prompts(
    run: str | Path,
    prompts: str | Path,
    n: int = 4,
    sampler: str = "dpm-solver",
    steps: int = 20,
    cfg: float = 4.5,
    res: int | None = None,
    batch: int = 32,
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    text_encoder: str | Path | None = None,
    step: int | None = None,
    log=None,
) -> Path:
    """Sample ``n`` images per prompt of ``prompts`` from a text run's EMA model into GenEval's layout in
    ``out`` (default ``RUN/prompts/<file stem>/<settings>``); returns ``out``."""
    from ablations.text_encoder import TextEncoder

    rows = read_prompts(prompts)
    config, setup, model = load_run_model(run, ema=True, device=device, step=step)
    if setup.conditioning != "text":
        raise UserError(f"{run} trained {config.model}, which takes no text: --prompts needs a text model run")
    res = res or setup.image_size
    factor = 8 if setup.latent else 1
    if res % factor:
        raise UserError(f"--res {res}: a latent model needs a multiple of 8")
    name = prompt_folder_name(sampler, steps, n, cfg, res)
    out = Path(out) if out else Path(run) / "prompts" / Path(prompts).stem / name
    folders = [out / f"{i:05d}" for i in range(len(rows))]
    todo = [
        (i, j) for i in range(len(rows)) for j in range(n) if not (folders[i] / "samples" / f"{j:05d}.png").exists()
    ]
    for i, row in enumerate(rows):  # metadata first: cheap, and a partial folder says what it is for
        line = folders[i] / "metadata.jsonl"
        if not line.is_file():
            atomic_write_text(line, json.dumps(row) + "\n")
    if not todo:
        return out
    encoder = TextEncoder(text_encoder or config.text_encoder, device)
    if encoder.channels != setup.caption_channels:
        raise UserError(
            f"the text encoder gives {encoder.channels}-channel embeddings, {config.model} takes "
            f"{setup.caption_channels}: pass the --text-encoder the run was trained with"
        )
    diffusion = GaussianDiffusion.from_name(config.schedule, config.num_timesteps)
    vae = load_vae(config.vae, device) if setup.latent else None
    size = res // factor
    for first in range(0, len(todo), batch):
        part = todo[first : first + batch]
        embeddings, mask = encoder.encode([rows[i]["prompt"] for i, _ in part], setup.caption_tokens)
        y, mask = embeddings.to(device), mask.to(device)
        noise = torch.stack(
            [
                torch.randn(setup.channels, size, size, generator=torch.Generator().manual_seed(_seed(seed, i, j)))
                for i, j in part
            ]
        ).to(device)
        null = setup.null_condition(model, len(part), torch.device(device))
        fn = guided(model, y, null, cfg, setup.channels, mask=mask)
        g = torch.Generator().manual_seed(_seed(seed, *part[0]))
        with torch.no_grad():
            x = sample(fn, noise, diffusion, sampler, steps, generator=g, clip=None if setup.latent else 1.0)
        images = decode(vae, x) if vae is not None else to_uint8(x)
        for (i, j), image in zip(part, images, strict=True):
            with atomic_path(folders[i] / "samples" / f"{j:05d}.png") as partial:
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(partial, format="PNG")
        if log is not None:
            log(f"{min(first + batch, len(todo))}/{len(todo)} images")
    return out


def _seed(seed: int, prompt: int, image: int) -> int:
    return (seed * 1_000_003 + prompt) * 1_009 + image
