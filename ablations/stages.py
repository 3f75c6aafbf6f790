"""The training stages, one object each: what a step optimises, which parameters train, and whether DDP wraps
the model.

- ``Diffusion``: the denoising loss of every run (``GaussianDiffusion.training_loss``); all parameters;
  DDP-wrapped on several processes.
- ``TeacherForcing`` (T2MD Sec. 3.4.1, Eq. 5-7): each student Mamba mixer fed the frozen teacher's input at
  its layer, regressed on the teacher's attention output; only the Mamba mixers train.
- ``Distillation`` (T2MD Sec. 3.4.2, Eq. 8-11): the diffusion loss plus the teacher's prediction as a soft
  target and its mixer outputs as feature targets; all token mixers train.

The distillation stages read the teacher through forward hooks on the plain student, which DDP's wrapper
would bypass; they are not wrapped, and the trainer averages their gradients by hand
(``Stage.ddp`` says which). ``stage_at(step)`` is the schedule: the trainer's loop asks it for the stage of a
step and never branches on the stage's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ablations import distill
from ablations.diffusion import GaussianDiffusion
from ablations.experiment import DistillConfig
from mambabench.errors import UserError


@dataclass
class Stage(ABC):
    """A stage of training (see module doc). ``loss`` returns the logged terms, the optimised one as "loss"."""

    name: str
    ddp: bool  # whether DDP wraps the model in this stage (else gradients are averaged by hand)

    def set_trainable(self, model: nn.Module) -> None:
        model.requires_grad_(True)

    @abstractmethod
    def loss(
        self,
        model: nn.Module,
        x0: Tensor,
        x_t: Tensor,
        t: Tensor,
        noise: Tensor,
        cond: Tensor | None,
        **step_kwargs: Any,
    ) -> dict[str, Tensor]:
        """``step_kwargs``: this step's extra model inputs (a video model's image-frame labels, a text model's
        caption ``mask``)."""


@dataclass
class Diffusion(Stage):
    diffusion: GaussianDiffusion
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. a video model's appended image frames

    def loss(self, model, x0, x_t, t, noise, cond, **step_kwargs):
        out = model(x_t, t, cond, **self.model_kwargs, **step_kwargs)
        return self.diffusion.training_loss(out, x0, x_t, t, noise)


@dataclass
class TeacherForcing(Stage):
    teacher: nn.Module

    def set_trainable(self, model: nn.Module) -> None:
        distill.set_trainable(model, "teacher_forcing")

    def loss(self, model, x0, x_t, t, noise, cond, mask=None, **step_kwargs):
        _image_only(self.name, step_kwargs)
        loss = distill.teacher_forcing_loss(self.teacher, model, x_t, t, cond, mask)
        return {"teacher_forcing": loss, "loss": loss}


@dataclass
class Distillation(Stage):
    teacher: nn.Module
    spec: DistillConfig

    def set_trainable(self, model: nn.Module) -> None:
        distill.set_trainable(model, "distill")

    def loss(self, model, x0, x_t, t, noise, cond, mask=None, **step_kwargs):
        _image_only(self.name, step_kwargs)
        terms = distill.distillation_losses(
            self.teacher,
            model,
            x_t,
            t,
            cond,
            noise,
            mask=mask,
            lambda_pseudo=self.spec.lambda_pseudo,
            lambda_mixer=self.spec.lambda_mixer,
        )
        terms["loss"] = terms.pop("total")
        return terms


def _image_only(stage: str, step_kwargs: dict[str, Any]) -> None:
    if step_kwargs:
        raise UserError(f"the {stage} stage distils image models: it takes no {', '.join(step_kwargs)}")


class StageSchedule:
    """Which stage trains at each step: diffusion for a plain run; teacher forcing for
    ``distill.teacher_forcing_steps`` steps and then distillation for a T2MD student."""

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        model_kwargs: dict[str, Any],
        spec: DistillConfig | None = None,
        teacher: nn.Module | None = None,
    ):
        self.spec = spec
        self.diffusion = Diffusion("diffusion", ddp=True, diffusion=diffusion, model_kwargs=model_kwargs)
        if spec is not None:
            self.forcing = TeacherForcing("teacher_forcing", ddp=False, teacher=teacher)
            self.distillation = Distillation("distill", ddp=False, teacher=teacher, spec=spec)

    def stage_at(self, step: int) -> Stage:
        if self.spec is None:
            return self.diffusion
        return self.forcing if step < self.spec.teacher_forcing_steps else self.distillation
