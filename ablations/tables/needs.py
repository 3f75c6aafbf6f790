"""The files a table preset needs that the harness cannot make: data, VAE, text encoder, a released teacher.

``preset_needs`` lists each with where it is looked for and whether it is there; ``check_needs`` raises one
``UserError`` listing every missing one (and what is already in place) before any run starts, so a paper
preset on a cluster never fails hours in for a file it could have named at the start. The released teacher's
path and the T5 folder come from ``--teacher`` / ``--text-encoder`` of ``ablations run``, which set
``$MAMBABENCH_TEACHER`` / ``$MAMBABENCH_TEXT_ENCODER`` so that ``--jobs`` helpers and cluster jobs see them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablations.caption_data import is_caption_dataset
from ablations.data import dataset_present
from ablations.tables.spec import Preset, TableSpec
from mambabench import settings
from mambabench.errors import UserError


@dataclass(frozen=True)
class Need:
    what: str  # what the file is and where to get it
    where: str  # the path looked at, or the option that gives it
    present: bool


def teacher_path(preset: Preset) -> str | None:
    """The released teacher checkpoint of a preset that distils from one (``--teacher``), else None. A diffusers
    folder (the pipeline's, or its ``transformer/``) stands for its ``diffusion_pytorch_model.safetensors``."""
    path = settings.teacher() if preset.teacher_file else None
    if path and Path(path).is_dir():
        for inside in ("diffusion_pytorch_model.safetensors", "transformer/diffusion_pytorch_model.safetensors"):
            if (Path(path) / inside).is_file():
                return str(Path(path) / inside)
    return path


def text_encoder_of(preset: Preset) -> str | None:
    """The T5 folder a caption preset's runs record: the preset's own (``tiny-t5``), else ``--text-encoder``."""
    if not is_caption_dataset(preset.data):
        return None
    return preset.text_encoder or settings.text_encoder()


def preset_needs(table: TableSpec, preset: Preset, data_root=None, vae=None) -> list[Need]:
    needs = []
    if preset.teacher_file:
        path = teacher_path(preset)
        needs.append(
            Need(
                f"the released teacher: {preset.teacher_file}",
                path or "--teacher PATH",
                bool(path and Path(path).is_file()),
            )
        )
    if is_caption_dataset(preset.data) and preset.text_encoder is None:
        from ablations.text_encoder import DOWNLOAD, resolve_text_encoder

        folder = settings.text_encoder()
        try:
            present = bool(folder) and bool(resolve_text_encoder(folder))
        except UserError:
            present = False
        needs.append(Need(f"PixArt-alpha's T5 (t5-v1_1-xxl): {DOWNLOAD}", folder or "--text-encoder DIR", present))
    if preset.needs_vae:
        present = bool(vae) and (Path(vae) / "config.json").is_file()
        needs.append(
            Need(
                "the SD VAE PixArt-alpha uses: `huggingface-cli download stabilityai/sd-vae-ft-ema --local-dir DIR`",
                str(vae) if vae else "--vae DIR",
                present,
            )
        )
    root = Path(data_root) if data_root else settings.data_dir()
    if is_caption_dataset(preset.data) and preset.data != "captioned-shapes":
        what = f"caption data --data {preset.data} (under --data-root {root} when relative; see docs/ablations.md)"
        needs.append(Need(what, preset.data.partition(":")[2], dataset_present(preset.data, root)))
    return needs


def check_needs(table: TableSpec, preset: Preset, data_root=None, vae=None) -> None:
    needs = preset_needs(table, preset, data_root, vae)
    missing = [n for n in needs if not n.present]
    if not missing:
        return
    lines = "; ".join(f"{'MISSING' if not n.present else 'ok'} {n.what} [{n.where}]" for n in needs)
    raise UserError(
        f"{table.id} --preset {preset.name} needs {len(needs)} files, {len(missing)} missing; nothing was run: {lines}"
    )
