"""One trainer for every registry model: diffusion loss or T2MD's distillation stages, EMA, AdamW, DDP,
atomic checkpoints and exact resume.

Determinism is by construction rather than by saving generator states: step s draws its timesteps, noise,
flips and label dropout from a generator seeded by (seed, s) for the *global* batch, and each rank takes its
slice; the data order is a permutation seeded by (seed, epoch). So a run resumed from step s draws exactly
what the uninterrupted run drew, and N ranks see the same global batch as one process (tests check both).

Multi-GPU / multi-node: launch the same command under ``torchrun``; the trainer joins the process group
(NCCL on CUDA, gloo on CPU) and wraps the model in DistributedDataParallel.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ablations import distill
from ablations.data import open_dataset
from ablations.diffusion import GaussianDiffusion
from ablations.experiment import (
    ModelSetup,
    RunConfig,
    build_model,
    check_run_config,
    config_differences,
    config_hash,
    describe_model,
    model_setup,
    same_run,
)
from ablations.latents import LatentShards, encode_moments, load_vae, sample_latent
from ablations.run_folder import (
    CheckpointError,
    checkpoint_path,
    checkpoints,
    init_from_run,
    is_finished,
    latest_checkpoint,
    load_run_model,
    load_weights,
    newest_checkpoint,
    save_checkpoint,
    step_of,
    trim_log,
)
from ablations.stages import Stage, StageSchedule
from ablations.video_train import append_image_frames, image_joint_kwargs
from mambabench.allocator import retain_freed_memory
from mambabench.device import resolve_device
from mambabench.errors import UserError
from mambabench.files import atomic_write_json


class NonFiniteLoss(UserError, RuntimeError, ValueError):
    """The loss became NaN/inf; the message names the step, the last good checkpoint and the fix (a
    ``UserError``: every command reports it as one line)."""


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data order


class StepBatches(Sampler[list[int]]):
    """Index lists of one rank's share of each global batch, from ``start`` to ``steps``; epoch e is a
    permutation seeded by (seed, e), so the order depends only on (seed, step)."""

    def __init__(self, length: int, batch: int, start: int, steps: int, seed: int, rank: int = 0, world: int = 1):
        if batch % world:
            raise ValueError(f"global batch {batch} does not split over {world} processes")
        self.length, self.batch, self.start, self.steps, self.seed = length, batch, start, steps, seed
        self.rank, self.world = rank, world
        self._perms: dict[int, Tensor] = {}

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.length)
        if epoch not in self._perms:
            self._perms = {
                epoch: torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + epoch))
            }
        return int(self._perms[epoch][offset])

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        share = self.batch // self.world
        for step in range(self.start, self.steps):
            first = step * self.batch + self.rank * share
            yield [self._index(p) for p in range(first, first + share)]


def _collate(items):
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


# ---------------------------------------------------------------- the trainer


class Trainer:
    """One run in folder ``out``: ``Trainer(config, out, resume=...).run()``.

    Failures leave the folder usable. ``config.json`` is written only once the run has started (model
    built, checkpoint and data opened), and a folder with a config but no checkpoint counts as never started,
    so the corrected command may take it. On resume, a damaged newest checkpoint is skipped (one line names
    it; it is kept beside as ``*.pt.damaged``) and training continues from the newest one that loads; log
    lines past that step are dropped, so ``log.jsonl`` matches an uninterrupted run.

    ``--steps`` (and ``ckpt_every``, ``log_every``) may change on resume (``experiment.RESUME_COMPATIBLE``):
    a finished 4-step run resumed with ``steps=6`` continues from step 4 and ends with the weights of a
    straight 6-step run (no setting depends on the total). The folder's ``config.json`` then says 6 steps
    (so its config hash is that of a 6-step run), its ``done.json`` becomes ``done-step-0000004.json`` and
    the step-4 checkpoint is never pruned. Fewer steps than already trained is an error."""

    def __init__(
        self,
        config: RunConfig,
        out: str | Path,
        resume: bool = False,
        progress: bool = False,
        keep_steps: tuple[int, ...] = (),
        device: str | None = None,
        log: Callable[[str], None] | None = None,
    ):
        config = _resolved_paths(config)  # config.json finds its teacher / init run from any working directory
        self.config, self.out, self.progress = config, Path(out), progress
        self.log = log or _warn
        self.keep_steps = set(keep_steps)  # checkpoints never pruned (evaluated later)
        check_run_config(config)
        self.world, self.rank, self.device = _distributed(device)
        if config.batch % self.world:
            raise UserError(f"--batch {config.batch} (the global batch) does not split over {self.world} processes")
        self.setup: ModelSetup = model_setup(config)
        self.model_kwargs = image_joint_kwargs(self.setup.entry.builder, config.image_joint)  # video models only
        self.diffusion = GaussianDiffusion.from_name(config.schedule, config.num_timesteps)
        self._check_folder(resume)

        torch.manual_seed(config.seed)
        wanted = describe_model(config.model, config.overrides)
        self.model = build_model(self.setup, config.overrides).to(self.device)
        self.teacher = self._prepare_distillation() if config.distill else None
        if config.init_from:
            init_from_run(self.model, config.init_from, wanted=wanted, log=self.log, family=self.setup.entry.family)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay
        )
        self.start = 0
        last, state = self._resume_state() if resume else (None, None)
        if state is not None:
            fix = f"resume it with the -m/--set it was trained with, or train {wanted} into another --out"
            load_weights(self.model, last, state, "model", wanted, fix)
            load_weights(self.ema, last, state, "ema", wanted, fix)
            self.optimizer.load_state_dict(state["optimizer"])
            self.start = int(state["step"])
            if self.start > config.steps:
                raise UserError(
                    f"{self.out} has trained to step {self.start} already, past --steps {config.steps}: pass "
                    f"--steps {self.start} or more, or choose another --out"
                )
        self.vae = load_vae(config.vae, self.device) if config.vae else None
        self.dataset = self._dataset()
        self.captions = self._caption_cache()
        self.schedule = StageSchedule(self.diffusion, self.model_kwargs, config.distill, self.teacher)
        self._stage: Stage | None = None
        self.wrapped: nn.Module = self.model
        if self.rank == 0:
            self._begin()

    # -- setup helpers

    def _check_folder(self, resume: bool) -> None:
        """A folder with checkpoints holds a run: continue it only with --resume and the same configuration
        (up to the settings a resume may change). Without checkpoints it has not started: it is ours."""
        if not checkpoints(self.out):
            return
        if not (self.out / "config.json").is_file():
            raise UserError(f"{self.out} has checkpoints but no config.json; choose another --out")
        saved = RunConfig.load(self.out)
        if config_hash(saved) != config_hash(self.config) and not same_run(saved, self.config):
            changed = "; ".join(config_differences(saved, self.config)[:4]) or "the run it starts from changed"
            raise UserError(f"{self.out} holds a run with another configuration ({changed}); choose another --out")
        if not resume:
            raise UserError(f"{self.out} already has checkpoints: add --resume to continue that run")

    def _resume_state(self) -> tuple[Path | None, dict | None]:
        """The newest checkpoint that loads; damaged newer ones are named and set aside (rank 0)."""
        keys = ("step", "model", "ema", "optimizer")
        path, state, skipped = newest_checkpoint(self.out, keys=keys, map_location=self.device)
        for bad, why in skipped if self.rank == 0 else ():
            kept = ""
            if bad.is_file():
                os.replace(bad, bad.with_name(bad.name + ".damaged"))
                kept = f"; kept as {bad.name}.damaged"
            self.log(f"warning: skipped damaged checkpoint {bad} ({why}){kept}; resuming from {path.name}")
        return path, state

    def _begin(self) -> None:
        """The run has started (model, checkpoint and data in hand): record its configuration, retire a
        finished marker it is going past, and drop log lines past the resumed step."""
        done = self.out / "done.json"
        if done.is_file() and self.start < self.config.steps:
            finished = json.loads(done.read_text()).get("steps")
            if finished == self.start:  # a finished run extended: keep its last checkpoint and summary
                os.replace(done, self.out / f"done-step-{self.start:07d}.json")
                self.log(f"extending the finished {self.start}-step run in {self.out} to {self.config.steps} steps")
            else:  # its final checkpoint was damaged: it is trained again
                done.unlink()
        self.config.save(self.out)
        trim_log(self.out, self.start)
        # what sampling needs to know about the data (class count for balanced labels)
        info = {"num_classes": int(getattr(self.dataset, "num_classes", 0)), "length": len(self.dataset)}
        if self.captions is not None:  # a text model on captions: sampling conditions on the data's captions
            info["caption_cache"] = str(self.captions.folder.resolve())
        atomic_write_json(self.out / "data.json", info)

    def _protected(self, step: int) -> bool:
        """Checkpoints never pruned: ``keep_steps`` and the final step of a finished run later extended."""
        return step in self.keep_steps or (self.out / f"done-step-{step:07d}.json").is_file()

    def _prepare_distillation(self) -> nn.Module:
        spec = self.config.distill
        if Path(spec.teacher).is_file():
            teacher = self._teacher_from_file(spec.teacher)
        else:
            _, _, teacher = load_run_model(spec.teacher, ema=True, device=self.device)
        teacher.requires_grad_(False)
        if spec.transfer:
            distill.transfer_weights(teacher, self.model)
        if spec.mamba_init == "attention":
            distill.init_mamba_from_attention(teacher, self.model)
        elif spec.mamba_init != "default":
            raise UserError(f"distill.mamba_init must be 'default' or 'attention', got {spec.mamba_init!r}")
        return teacher

    def _teacher_from_file(self, path: str) -> nn.Module:
        """The student's all-attention twin (PixArt-alpha: ``SAx<depth>``, PixArt's position table) with the
        weights of a checkpoint file, e.g. PixArt-alpha's official ``PixArt-XL-2-512x512.pth`` or its diffusers
        ``diffusion_pytorch_model.safetensors`` (read as ``zoo.create_model(..., pretrained=PATH)`` reads them)."""
        import zoo

        overrides = {**self.setup.overrides, "layout": f"SAx{len(self.model.blocks)}", "pos_embed": "pixart"}
        try:
            teacher = zoo.create_model(self.setup.entry.name, pretrained=path, **overrides)
        except ValueError as error:
            raise CheckpointError(f"distill.teacher: {error}") from None
        return teacher.to(self.device).eval()

    def _dataset(self) -> Dataset:
        config = self.config
        if config.data.startswith("latents:"):
            return LatentShards(config.data.split(":", 1)[1])
        return open_dataset(
            config.data,
            config.data_root,
            size=self.setup.image_size,
            frames=max(self.setup.frames, 1),
            interval=config.frame_interval,
        )

    def _caption_cache(self):
        """The caption embeddings of a caption data set for a text model (``ablations.text_encoder``), built
        on first use; None for any other data (text models then see fixed class captions)."""
        from ablations.caption_data import captions_of

        captions = captions_of(self.dataset)
        if captions is None:
            return None
        if self.setup.conditioning == "class":
            raise UserError(
                f"{self.config.data} is a caption data set and {self.config.model} is class-conditional: train a "
                "text model (pixart-*, t2md*) on captions, or this one on a class-labelled set"
            )
        if self.setup.conditioning != "text":
            return None
        from ablations.text_encoder import open_caption_cache

        folder = self.dataset.folder / "captions" if isinstance(self.dataset, LatentShards) else None
        return open_caption_cache(
            captions,
            self.setup.caption_tokens,
            self.setup.caption_channels,
            self.config.text_encoder,
            folder,
            self.device,
            self.log,
        )

    # -- one step

    def _model_input(self, images: Tensor, flips: Tensor, g: torch.Generator) -> Tensor:
        """[-1, 1] pixels or scaled VAE latents, flipped where ``flips``."""
        if isinstance(self.dataset, LatentShards):  # moments (B, views, 2C, h, w)
            view = flips.long() if images.shape[1] > 1 else torch.zeros_like(flips, dtype=torch.long)
            moments = images[torch.arange(len(images)), view]
            return sample_latent(moments, self.dataset.scale, g).to(self.device)
        images = torch.where(flips.view(-1, *[1] * (images.dim() - 1)), images.flip(-1), images)  # images or clips
        if self.setup.latent:
            return sample_latent(encode_moments(self.vae, images), self.vae.config.scaling_factor, g).to(self.device)
        return images.to(self.device, torch.float32) / 127.5 - 1

    def _draws(self, step: int, shape: tuple[int, ...]):
        """This step's random draws for the whole global batch, then this rank's slice."""
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        batch = self.config.batch
        flips = (torch.rand(batch, generator=g) < 0.5) & torch.tensor(self.config.flip)
        t = torch.randint(0, self.diffusion.num_timesteps, (batch,), generator=g)
        noise = torch.randn((batch, *shape), generator=g)
        drop = torch.rand(batch, generator=g) < self.config.cfg_dropout
        share = batch // self.world
        part = slice(self.rank * share, (self.rank + 1) * share)
        return g, flips[part], t[part].to(self.device), noise[part].to(self.device), drop[part].to(self.device)

    def _enter_stage(self, step: int) -> Stage:
        """The stage of ``step``; on a change, its trainable parameters and its (DDP-wrapped or plain) model."""
        stage = self.schedule.stage_at(step)
        if stage is not self._stage:
            stage.set_trainable(self.model)
            self.wrapped = self.model
            if self.world > 1 and stage.ddp:
                from torch.nn.parallel import DistributedDataParallel

                ids = [self.device.index] if self.device.type == "cuda" else None
                self.wrapped = DistributedDataParallel(self.model, device_ids=ids)
            self._stage = stage
        return stage

    def _average_gradients(self) -> None:
        """For stages DDP does not wrap (their hooks need the plain module): the gradients' mean over ranks."""
        for p in self.model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        decay = self.config.ema
        if self.config.ema_warmup:
            decay = min(decay, (1 + step) / (10 + step))
        for ema_p, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1 - decay)

    def _checkpoint(self, step: int) -> Path:
        path = checkpoint_path(self.out, step)
        if self.rank == 0:
            save_checkpoint(
                self.out,
                step,
                {
                    "step": step,
                    "model": self.model.state_dict(),
                    "ema": self.ema.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "config_hash": config_hash(self.config),
                    "model_spec": {"model": self.config.model, "overrides": self.config.overrides},
                },
            )
            for old in checkpoints(self.out)[:-2]:
                if not self._protected(step_of(old)):
                    old.unlink()
        if self.world > 1:
            dist.barrier()
        return path

    def _loss(
        self, step: int, stage: Stage, images: Tensor, labels: Tensor, shape: tuple[int, ...], autocast
    ) -> dict[str, Tensor]:
        """The loss terms of one step: the step's draws (flips, timesteps, noise, label dropout), the noised
        input and the stage's loss of the model on it."""
        config = self.config
        torch.manual_seed(config.seed * 1_000_003 + step)  # any dropout inside a model
        g, flips, t, noise, drop = self._draws(step, shape)
        x0, sources = append_image_frames(self._model_input(images, flips, g), config.image_joint, g)
        step_kwargs = {} if sources is None else {"image_cond": self._image_labels(labels, sources, g)}
        if self.captions is not None:  # labels are caption indices; the mask is kept for dropped captions too
            y, mask = (v.to(self.device) for v in self.captions.lookup(labels))
            step_kwargs["mask"] = mask
        else:
            y = self.setup.condition(self.model, labels.to(self.device))
        if y is not None and drop.any():
            null = self.setup.null_condition(self.model, len(drop), self.device)
            y = torch.where(drop.view(-1, *([1] * (y.dim() - 1))), null.to(y.dtype), y)
        with autocast:
            return stage.loss(self.wrapped, x0, self.diffusion.q_sample(x0, t, noise), t, noise, y, **step_kwargs)

    def _image_labels(self, labels: Tensor, sources: Tensor, g: torch.Generator) -> Tensor | None:
        """(B, n) labels of the appended image frames: each its own video's class, dropped to the null label
        with the condition-dropout probability on a draw of its own (Latte's ``y_image``); None for a model
        without labels."""
        if self.setup.conditioning != "class":
            return None
        drop = torch.rand(sources.shape, generator=g) < self.config.cfg_dropout
        image_labels = torch.where(drop, self.model.num_classes, labels[sources])
        return image_labels.to(self.device)

    def _check_finite(self, loss: Tensor, step: int, last_good: Path | None) -> None:
        """Stop, naming the last good checkpoint, when any process's loss is not finite (one host sync)."""
        finite = torch.tensor([float(torch.isfinite(loss))], device=self.device)
        if self.world > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            raise NonFiniteLoss(
                f"loss is {loss.item()} at step {step}; last good checkpoint: {last_good or 'none'}; "
                f"lower --lr (now {self.config.lr:g}) and train into another --out (a resume repeats the same steps)"
            )

    def _update(self, loss: Tensor, stage: Stage, step: int) -> None:
        """Backward, gradient averaging where DDP does not wrap the stage, clipping, the optimizer and EMA."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1 and not stage.ddp:
            self._average_gradients()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self._update_ema(step)

    def run(self, stop_after: int | None = None) -> dict:
        """Train from the start (or the resumed step) to ``config.steps``; returns the summary in done.json.
        ``stop_after`` ends the session early, as a kill would (no done.json), e.g. for a time-sliced job."""
        config = self.config
        if self.start >= config.steps and is_finished(self.out):  # resumed after the end: nothing to do
            return json.loads((self.out / "done.json").read_text())
        end = min(config.steps, stop_after) if stop_after is not None else config.steps
        retain_freed_memory()  # each step reuses the last one's memory instead of faulting it in again
        sampler = StepBatches(len(self.dataset), config.batch, self.start, end, config.seed, self.rank, self.world)
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=config.workers, collate_fn=_collate)
        shape = self.setup.sample_shape(extra_frames=config.image_joint)  # (C, h, w) or (C, T [+ images], h, w)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if config.amp and self.device.type == "cuda" else nullcontext()
        )
        log = (self.out / "log.jsonl").open("a") if self.rank == 0 else None
        last_good = latest_checkpoint(self.out)
        started, losses = time.time(), []
        bar = _progress(self.progress and self.rank == 0, config.steps, self.start)
        self.model.train()
        try:
            for step, (images, labels) in enumerate(loader, start=self.start):
                stage = self._enter_stage(step)
                terms = self._loss(step, stage, images, labels, shape, autocast)
                loss = terms["loss"]
                self._check_finite(loss, step, last_good)
                self._update(loss, stage, step)
                losses.append(loss.item())
                done = step + 1
                if log is not None and (done % config.log_every == 0 or done == config.steps):
                    record = {
                        "step": done,
                        "stage": stage.name,
                        **{k: round(v.item(), 6) for k, v in terms.items()},
                        "sec_per_step": round((time.time() - started) / (done - self.start), 4),
                    }
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                if done % config.ckpt_every == 0 or done == end:
                    last_good = self._checkpoint(done)
                bar(done, loss.item())
        finally:  # also when a step fails: the progress bar gives the terminal back, the log is closed
            if log is not None:
                log.close()
            bar(None, None)
        summary = {
            "steps": config.steps,
            "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])) if losses else None,
            "seconds": round(time.time() - started, 2),
            "config_hash": config_hash(config),
            "world": self.world,
            "device": str(self.device),
        }
        if self.rank == 0 and end == config.steps:
            atomic_write_json(self.out / "done.json", summary, indent=2)
        return summary


def _distributed(device: str | None = None) -> tuple[int, int, torch.device]:
    """(world size, rank, device); joins the torchrun process group when WORLD_SIZE > 1. ``device`` None:
    a GPU when there is one (under torchrun, the one of LOCAL_RANK)."""
    requested = resolve_device(device) if device else None
    cuda = requested.type == "cuda" if requested is not None else torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if world == 1 and requested is not None and requested.index is not None:
            local = requested.index
        torch.cuda.set_device(local)
        return world, rank, torch.device("cuda", local)
    return world, rank, requested if requested is not None else torch.device("cpu")


def _resolved_paths(config: RunConfig) -> RunConfig:
    """``config`` with its teacher and ``init_from`` folders as absolute paths (the hash is the same)."""
    changes = {}
    if config.init_from:
        changes["init_from"] = str(Path(config.init_from).expanduser().resolve())
    if config.text_encoder and Path(config.text_encoder).expanduser().exists():  # a folder, not "tiny-t5"
        changes["text_encoder"] = str(Path(config.text_encoder).expanduser().resolve())
    if config.distill is not None:
        teacher = str(Path(config.distill.teacher).expanduser().resolve())
        changes["distill"] = dataclasses.replace(config.distill, teacher=teacher)
    return dataclasses.replace(config, **changes) if changes else config


def _progress(enabled: bool, total: int, start: int):
    """A rich progress bar with loss and speed (a no-op when disabled); call with (step, loss), then None."""
    if not enabled:
        return lambda *_: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn()
    )
    progress.start()
    task = progress.add_task("train", total=total, completed=start, info="")
    t0, s0 = time.time(), start

    def update(step, loss):
        if step is None:
            progress.stop()
            return
        rate = (step - s0) / max(time.time() - t0, 1e-9)
        progress.update(task, completed=step, info=f"loss {loss:.4f}  {rate:.2f} it/s")

    return update


def train(
    config: RunConfig, out: str | Path, resume: bool = False, progress: bool = False, device: str | None = None
) -> dict:
    """Train (or resume) the run ``config`` in folder ``out``; returns the done.json summary."""
    return Trainer(config, out, resume=resume, progress=progress, device=device).run()
