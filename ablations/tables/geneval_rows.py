"""GenEval beside FID for the rows of a table whose paper metric is GenEval (``TableSpec.paper_scorer``).

When ``ablations run`` is given GenEval's inputs (``--geneval-metadata FILE``, with ``--detector DIR`` and
``--clip DIR|FILE`` or their defaults; or ``$MAMBABENCH_GENEVAL_METADATA``, ``_DETECTOR``, ``_CLIP``), every row
whose run was trained on captions (a text encoder) is, after its FID, sampled on the metadata's prompts
(``ablations.generate_prompts``: GenEval's layout in ``RUN/prompts/<metadata stem>/step<S>-<settings>/``) and
scored (``ablations.geneval``: ``results.jsonl`` and ``summary.json`` in ``geneval/<scorer digest>/`` beside
the images). The scores go into their own score file next to the FID one, named by what it holds
(``layout.geneval_file``: step, sampling, images per prompt, metadata stem and a digest of the metadata's
content and the detector and CLIP paths), and join the row's result as ``geneval_overall`` and
``geneval_<task>`` (fractions of images correct; higher is better), with the detector and CLIP that scored them.

Every step resumes: samples already on disk are not drawn again, images already in ``results.jsonl`` are not
scored again, and a row whose GenEval score file exists is not touched. A row trained without captions (a
class-caption preset) gets FID only. Without the metadata nothing here runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ablations.experiment import RunConfig
from ablations.tables.layout import geneval_file
from ablations.tables.spec import Preset, TableSpec
from mambabench import settings
from mambabench.errors import UserError
from mambabench.files import atomic_write_json


@dataclass(frozen=True)
class GenevalInputs:
    metadata: Path
    detector: Path
    clip: Path

    @property
    def tag(self) -> str:
        """What names the score file and the results folder: the metadata's stem and a digest of its content and
        the detector and CLIP paths (another metadata file or scorer is another file, never mixed)."""
        digest = hashlib.sha256(self.metadata.read_bytes())
        digest.update(f"\n{self.detector.resolve()}\n{self.clip.resolve()}".encode())
        return f"{self.metadata.stem}-{digest.hexdigest()[:10]}"


def geneval_inputs(table: TableSpec, log: Callable[[str], None] | None = None) -> GenevalInputs | None:
    """The GenEval inputs of this run of ``table`` (checked: the metadata's shape, the detector and CLIP present),
    or None when the table's paper metric is not GenEval or no metadata was given."""
    metadata = settings.geneval_metadata()
    if table.paper_scorer != "geneval":
        if metadata and log is not None:
            log(f"{table.id}: the paper's metric is not GenEval; --geneval-metadata is not used")
        return None
    if not metadata:
        if log is not None:
            log(
                f"{table.id}: scored with FID only; for GenEval pass --geneval-metadata FILE (and --detector DIR, "
                "--clip DIR|FILE; docs/geneval.md)"
            )
        return None
    from ablations.geneval.colour import TRANSFORMERS_CLIP
    from ablations.geneval.detectors import TRANSFORMERS_DETECTOR
    from ablations.geneval.metadata import read_metadata

    read_metadata(Path(metadata))  # its shape, before any training
    inputs = GenevalInputs(Path(metadata), settings.geneval_detector(), settings.geneval_clip())
    for path, what in ((inputs.detector, TRANSFORMERS_DETECTOR), (inputs.clip, TRANSFORMERS_CLIP)):
        if not path.exists():
            raise UserError(
                f"GenEval: {path} not found: download {what} there, or pass --detector DIR / --clip DIR|FILE "
                "(docs/geneval.md)"
            )
    return inputs


def scores_geneval(config: RunConfig) -> bool:
    """Whether a row's run is scored with GenEval: it was trained on captions through a text encoder."""
    return config.text_encoder is not None


@functools.cache
def _scorer(detector: Path, clip: Path, device: str):
    """The detector and the colour step, loaded once per process."""
    from ablations.geneval.colour import load_clip
    from ablations.geneval.detectors import load_detector

    return load_detector(detector, None, device), load_clip(clip, device)


def score_row(
    config: RunConfig,
    folder: Path,
    preset: Preset,
    cfg: float,
    seed: int,
    device: str,
    step: int,
    inputs: GenevalInputs,
    prepare: Callable[[], None] = lambda: None,
) -> tuple[dict, bool]:
    """(the GenEval scores of the checkpoint at ``step``, whether they were computed now rather than read);
    ``prepare`` runs first when they are computed (the runner makes sure the checkpoint is there)."""
    tag = inputs.tag
    path = geneval_file(folder, step, preset, cfg, tag)
    if path.is_file():
        return json.loads(path.read_text()), False
    prepare()
    from ablations.generate_prompts import generate_from_prompts
    from ablations.geneval.metadata import TASKS, read_folder, read_metadata
    from ablations.geneval.score import RESULTS, check_images, score_folder, summarise, write_summary

    n = preset.geneval_per_prompt
    settings_name = f"step{step}-{preset.sampler}-{preset.sample_steps}steps-cfg{cfg:g}-n{n}"
    images = generate_from_prompts(
        folder,
        inputs.metadata,
        n=n,
        sampler=preset.sampler,
        steps=preset.sample_steps,
        cfg=cfg,
        seed=seed,
        device=device,
        out=folder / "prompts" / inputs.metadata.stem / settings_name,
        step=step,
    )
    prompts = read_folder(images, read_metadata(inputs.metadata), n)
    check_images(prompts)
    detector, colours = _scorer(inputs.detector, inputs.clip, device)
    out = images / "geneval" / tag.rsplit("-", 1)[1]
    summary = summarise(score_folder(prompts, images, detector, colours, out))
    write_summary(out, summary)
    scores = {
        "geneval_overall": summary["overall"],
        **{f"geneval_{task}": summary["tasks"].get(task) for task in TASKS},
        "geneval_detector": summary["detector"],
        "geneval_clip": summary["clip"],
        "geneval_images": summary["images"],
        "geneval_prompts": summary["prompts"],
        "geneval_metadata": str(inputs.metadata),
        "geneval_results": str(out / RESULTS),
    }
    atomic_write_json(path, scores, indent=2)
    return scores, True
