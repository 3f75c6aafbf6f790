"""What a paper table is, as data: variants (registry names + overrides), presets (the same variants at
another scale), checkpoints, and the paper's own numbers. Running and reporting are generic
(``ablations.tables.runner``, ``ablations.tables.report``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mambabench.errors import UserError


class UnknownName(UserError, KeyError):
    """A table, preset or variant name that does not exist; the message lists the names that do (a
    ``KeyError`` too, as for any lookup by name)."""


@dataclass(frozen=True)
class Variant:
    """One row of a table.

    ``overrides`` are the variant's own changes at paper scale (e.g. ``scan_patterns="1"``);
    ``preset_overrides[preset]`` restates them where a preset's smaller model needs another value (a layout
    string for fewer blocks). ``paper[checkpoint][metric]`` holds the paper's numbers. ``distill`` holds
    ``DistillConfig`` fields, with ``teacher_forcing`` a fraction of the steps; its teacher is the table's
    ``teacher`` variant. Variants with equal training configurations share one run (e.g. CFG rows)."""

    key: str
    label: str
    model: str
    overrides: dict[str, Any] = field(default_factory=dict)
    preset_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    paper: dict[str, dict[str, float]] = field(default_factory=dict)
    cfg: float | None = None  # sampling guidance for this row (default: the preset's)
    distill: dict[str, Any] | None = None
    teacher: bool = False  # trained first; the distillation rows learn from it
    reference: bool = False  # the full model: every other row's effect is measured against it
    run_overrides: dict[str, Any] = field(default_factory=dict)  # RunConfig fields, e.g. {"image_joint": 8}


@dataclass(frozen=True)
class Preset:
    """A scale at which every variant of a table is trained and scored."""

    name: str
    data: str
    res: int  # training image size, pixels
    steps: int
    batch: int
    lr: float
    ema: float
    n_samples: int  # generated images per score
    ref_n: int  # reference images for FID statistics
    sampler: str = "dpm-solver"
    sample_steps: int = 25
    cfg: float = 1.0
    space: str = "auto"  # "pixel": latent models trained on pixels (no VAE); the report says so
    schedule: str = "linear"
    teacher_steps: int | None = None
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per registry name: shrink
    checkpoints: dict[str, float] = field(default_factory=lambda: {"final": 1.0})  # label -> fraction of steps
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    cfg_dropout: float = 0.1
    ema_warmup: bool = True  # the paper presets: False (constant decay, as the papers' code)
    needs_vae: bool = False
    deviations: str = ""  # how this preset departs from the paper's protocol (shown in the report header)
    frames: int | None = None  # video tables: frames per clip (default: the entry's)
    frame_interval: int | None = None  # video tables: every k-th frame (default: the data set's)
    cost: str = ""  # expected cost (CPU wall time measured here, or GPU-hours by the paper's account)
    # text-to-image presets: the T5 folder that encodes the captions ("tiny-t5": ablations.text_encoder's tiny T5;
    # None: --text-encoder / $MAMBABENCH_TEXT_ENCODER), and the released teacher checkpoint the students distil
    # from instead of a teacher trained here (what to fetch; the path is --teacher / $MAMBABENCH_TEACHER)
    text_encoder: str | None = None
    teacher_file: str | None = None
    geneval_per_prompt: int = 4  # images per GenEval prompt when the rows are scored with GenEval (its protocol: 4)


@dataclass(frozen=True)
class TableSpec:
    id: str
    paper: str
    title: str
    variants: tuple[Variant, ...]
    presets: dict[str, Preset]
    paper_metrics: tuple[str, ...]  # columns of the paper's numbers, first = the one effects are judged on
    paper_higher_is_better: bool = False
    note: str = ""  # shown in every report header (e.g. metric substitutions)
    aliases: tuple[str, ...] = ()
    our_metric: str = "fid"  # what we score every row with: "fid" (images) or "fvd" (video clips)
    paper_only: tuple[tuple[str, float], ...] = ()  # the paper's rows of other methods: (label, its number)
    # the paper's metric when it is one we can also score beside ``our_metric`` given its inputs ("geneval": the
    # text rows are scored with GenEval when `ablations run` gets --geneval-metadata; ablations.tables.geneval_rows)
    paper_scorer: str | None = None

    def variant(self, key: str) -> Variant:
        for v in self.variants:
            if v.key == key:
                return v
        raise UnknownName(f"{self.id} has no variant {key!r}; variants: {', '.join(v.key for v in self.variants)}")

    @property
    def reference(self) -> Variant:
        return next(v for v in self.variants if v.reference)

    @property
    def teacher(self) -> Variant | None:
        return next((v for v in self.variants if v.teacher), None)


_SMOKE = dict(data="builtin", res=16, steps=30, batch=8, lr=2e-3, ema=0.9, n_samples=16, ref_n=16, sample_steps=10)
_CPU = dict(res=32, steps=3000, batch=32, lr=5e-4, ema=0.999, n_samples=1000, ref_n=5000, sample_steps=25)


def smoke_preset(**fields: Any) -> Preset:
    """The smoke scale every table shares (built-in data at 16 px, 30 steps of batch 8, FID of 16 images),
    with a table's own fields on top."""
    return Preset("smoke", **{**_SMOKE, **fields})


def cpu_preset(name: str = "cpu", **fields: Any) -> Preset:
    """The CPU scale every table shares (32 px, 3K steps of batch 32, FID of 1K samples against 5K training
    images), with a table's own fields on top; ``name`` for a variation of it (e.g. "cpu-builtin")."""
    return Preset(name, **{**_CPU, **fields})
