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
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ablations import distill
from ablations.data import open_dataset
from ablations.diffusion import GaussianDiffusion
from ablations.experiment import ModelSetup, RunConfig, config_hash, model_setup
from ablations.latents import LatentShards, encode_moments, load_vae, sample_latent


class NonFiniteLoss(RuntimeError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


# ---------------------------------------------------------------- run folder: checkpoints


def checkpoints(folder: Path) -> list[Path]:
    return sorted((folder / "checkpoints").glob("step-*.pt"))


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = checkpoints(Path(folder))
    return found[-1] if found else None


def _save_atomic(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    torch.save(obj, partial)
    os.replace(partial, path)  # a reader sees the old file or the new one, never half of one


def is_finished(folder: str | Path) -> bool:
    return (Path(folder) / "done.json").is_file()


def load_run_model(folder: str | Path, ema: bool = True, device: str | torch.device = "cpu", step: int | None = None):
    """(config, setup, model) of a run from its latest checkpoint (or the one of ``step``), EMA weights by
    default, in eval mode."""
    config = RunConfig.load(folder)
    setup = model_setup(config)
    path = latest_checkpoint(folder) if step is None else Path(folder) / "checkpoints" / f"step-{step:07d}.pt"
    if path is None or not path.is_file():
        raise FileNotFoundError(f"{folder} has no checkpoint {'yet' if step is None else f'of step {step}'}")
    state = torch.load(path, map_location="cpu")
    model = setup.build()
    model.load_state_dict(state["ema" if ema else "model"])
    return config, setup, model.to(device).eval()


def init_from_run(model: nn.Module, folder: str | Path) -> list[str]:
    """Start from another run's EMA weights, also at another resolution: learned position embeddings whose
    grid differs are bilinearly resized (sin-cos ones are recomputed by the models anyway). Returns the keys
    resized. Any other shape mismatch is an error."""
    from zoo.layers.pos_embed import resize_learned

    path = latest_checkpoint(folder)
    if path is None:
        raise FileNotFoundError(f"--init-from {folder}: no checkpoint there")
    source = torch.load(path, map_location="cpu")["ema"]
    target = model.state_dict()
    resized, bad = [], []
    for key, value in target.items():
        if key not in source:
            bad.append(f"{key} (missing)")
        elif source[key].shape != value.shape:
            if key.endswith("pos_embed") and source[key].dim() == 3:
                old_grid, new_grid = _grid(source[key], value)
                extras = source[key].shape[1] - old_grid**2
                source[key] = resize_learned(source[key], extras, old_grid, new_grid, new_grid)
                resized.append(key)
            else:
                bad.append(f"{key} {tuple(source[key].shape)} -> {tuple(value.shape)}")
    if bad:
        raise ValueError(f"--init-from {folder}: incompatible weights: {', '.join(bad[:8])}")
    model.load_state_dict({k: source[k] for k in target})
    return resized


def _grid(old: Tensor, new: Tensor) -> tuple[int, int]:
    """Square patch grids of two learned embeddings that share their count of leading extra tokens."""
    for extras in range(0, 4):
        g_old, g_new = math.isqrt(old.shape[1] - extras), math.isqrt(new.shape[1] - extras)
        if g_old**2 + extras == old.shape[1] and g_new**2 + extras == new.shape[1]:
            return g_old, g_new
    raise ValueError(f"cannot read a square grid from position embeddings {tuple(old.shape)}, {tuple(new.shape)}")


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
    def __init__(self, config: RunConfig, out: str | Path, resume: bool = False, progress: bool = False,
                 keep_steps: tuple[int, ...] = ()):  # fmt: skip
        self.config, self.out, self.progress = config, Path(out), progress
        self.keep_steps = set(keep_steps)  # checkpoints never pruned (evaluated later)
        self.world, self.rank, self.device = _distributed()
        self.setup: ModelSetup = model_setup(config)
        self.diffusion = GaussianDiffusion.from_name(config.schedule, config.num_timesteps)
        self._check_folder(resume)

        torch.manual_seed(config.seed)
        self.model = self.setup.build().to(self.device)
        self.teacher = self._prepare_distillation() if config.distill else None
        if config.init_from:
            init_from_run(self.model, config.init_from)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay
        )
        self.start = 0
        last = latest_checkpoint(self.out) if resume else None
        if last is not None:
            state = torch.load(last, map_location=self.device)
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.start = int(state["step"])
        self.vae = load_vae(config.vae, self.device) if config.vae else None
        self.dataset = self._dataset()
        if self.rank == 0:  # what sampling needs to know about the data (class count for balanced labels)
            info = {"num_classes": int(getattr(self.dataset, "num_classes", 0)), "length": len(self.dataset)}
            (self.out / "data.json").write_text(json.dumps(info) + "\n")
        self._stage = None
        self.wrapped: nn.Module = self.model

    # -- setup helpers

    def _check_folder(self, resume: bool) -> None:
        saved = self.out / "config.json"
        if saved.is_file():
            if config_hash(RunConfig.load(self.out)) != config_hash(self.config):
                raise FileExistsError(f"{self.out} holds a run with another configuration; choose another --out")
            if not resume and latest_checkpoint(self.out) is not None:
                raise FileExistsError(f"{self.out} already has checkpoints: add --resume to continue that run")
        if self.rank == 0:
            self.config.save(self.out)

    def _prepare_distillation(self) -> nn.Module:
        spec = self.config.distill
        _, _, teacher = load_run_model(spec.teacher, ema=True, device=self.device)
        teacher.requires_grad_(False)
        if spec.transfer:
            distill.transfer_weights(teacher, self.model)
        if spec.mamba_init == "attention":
            distill.init_mamba_from_attention(teacher, self.model)
        elif spec.mamba_init != "default":
            raise ValueError(f"distill.mamba_init must be 'default' or 'attention', got {spec.mamba_init!r}")
        return teacher

    def _dataset(self) -> Dataset:
        config = self.config
        if config.data.startswith("latents:"):
            return LatentShards(config.data.split(":", 1)[1])
        return open_dataset(config.data, config.data_root, size=self.setup.image_size)

    # -- one step

    def _model_input(self, images: Tensor, flips: Tensor, g: torch.Generator) -> Tensor:
        """[-1, 1] pixels or scaled VAE latents, flipped where ``flips``."""
        if isinstance(self.dataset, LatentShards):  # moments (B, views, 2C, h, w)
            view = flips.long() if images.shape[1] > 1 else torch.zeros_like(flips, dtype=torch.long)
            moments = images[torch.arange(len(images)), view]
            return sample_latent(moments, self.dataset.scale, g).to(self.device)
        images = torch.where(flips.view(-1, 1, 1, 1), images.flip(-1), images)
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

    def _set_stage(self, step: int) -> str:
        spec = self.config.distill
        stage = "diffusion" if spec is None else ("teacher_forcing" if step < spec.teacher_forcing_steps else "distill")
        if stage != self._stage:
            if stage == "diffusion":
                self.model.requires_grad_(True)
            else:
                distill.set_trainable(self.model, stage)
            self.wrapped = self.model
            if self.world > 1 and stage == "diffusion":  # distillation averages gradients itself (see run)
                from torch.nn.parallel import DistributedDataParallel

                ids = [self.device.index] if self.device.type == "cuda" else None
                self.wrapped = DistributedDataParallel(self.model, device_ids=ids)
            self._stage = stage
        return stage

    def _loss(self, stage: str, x0: Tensor, t: Tensor, noise: Tensor, y) -> dict[str, Tensor]:
        x_t = self.diffusion.q_sample(x0, t, noise)
        if stage == "diffusion":
            return self.diffusion.training_loss(self.wrapped(x_t, t, y), x0, x_t, t, noise)
        if stage == "teacher_forcing":
            loss = distill.teacher_forcing_loss(self.teacher, self.wrapped_module(), x_t, t, y)
            return {"teacher_forcing": loss, "loss": loss}
        spec = self.config.distill
        terms = distill.distillation_losses(
            self.teacher,
            self.wrapped_module(),
            x_t,
            t,
            y,
            noise,
            lambda_pseudo=spec.lambda_pseudo,
            lambda_mixer=spec.lambda_mixer,
        )
        terms["loss"] = terms.pop("total")
        return terms

    def wrapped_module(self) -> nn.Module:
        return self.model  # distillation hooks need the plain module (DDP syncs gradients of its parameters)

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        decay = self.config.ema
        if self.config.ema_warmup:
            decay = min(decay, (1 + step) / (10 + step))
        for ema_p, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1 - decay)

    def _checkpoint(self, step: int) -> Path:
        path = self.out / "checkpoints" / f"step-{step:07d}.pt"
        if self.rank == 0:
            _save_atomic(
                {
                    "step": step,
                    "model": self.model.state_dict(),
                    "ema": self.ema.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "config_hash": config_hash(self.config),
                },
                path,
            )
            for old in checkpoints(self.out)[:-2]:
                if int(old.stem.split("-")[1]) not in self.keep_steps:
                    old.unlink()
        if self.world > 1:
            dist.barrier()
        return path

    def run(self, stop_after: int | None = None) -> dict:
        """Train from the start (or the resumed step) to ``config.steps``; returns the summary in done.json.
        ``stop_after`` ends the session early, as a kill would (no done.json), e.g. for a time-sliced job."""
        config = self.config
        if self.start >= config.steps and is_finished(self.out):  # resumed after the end: nothing to do
            return json.loads((self.out / "done.json").read_text())
        end = min(config.steps, stop_after) if stop_after is not None else config.steps
        share = config.batch // self.world
        sampler = StepBatches(len(self.dataset), config.batch, self.start, end, config.seed, self.rank, self.world)
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=config.workers, collate_fn=_collate)
        shape = (self.setup.channels, self.setup.input_size, self.setup.input_size)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if config.amp and self.device.type == "cuda" else nullcontext()
        )
        log = (self.out / "log.jsonl").open("a") if self.rank == 0 else None
        last_good = latest_checkpoint(self.out)
        started, losses = time.time(), []
        bar = _progress(self.progress and self.rank == 0, config.steps, self.start)
        self.model.train()
        for step, (images, labels) in enumerate(loader, start=self.start):
            stage = self._set_stage(step)
            torch.manual_seed(config.seed * 1_000_003 + step)  # any dropout inside a model
            g, flips, t, noise, drop = self._draws(step, shape)
            x0 = self._model_input(images, flips, g)
            y = self.setup.condition(self.model, labels.to(self.device))
            if y is not None and drop.any():
                null = self.setup.null_condition(self.model, share, self.device)
                y = torch.where(drop.view(-1, *([1] * (y.dim() - 1))), null.to(y.dtype), y)
            with autocast:
                terms = self._loss(stage, x0, t, noise, y)
            loss = terms["loss"]
            finite = torch.tensor([float(torch.isfinite(loss))], device=self.device)
            if self.world > 1:
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            if finite.item() < 1:
                raise NonFiniteLoss(
                    f"loss is {loss.item()} at step {step}; last good checkpoint: {last_good or 'none'}"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.world > 1 and stage != "diffusion":  # the hooks bypass DDP: average gradients by hand
                for p in self.model.parameters():
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= self.world
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            self._update_ema(step)
            losses.append(loss.item())
            done = step + 1
            if log is not None and (done % config.log_every == 0 or done == config.steps):
                record = {
                    "step": done,
                    "stage": stage,
                    **{k: round(v.item(), 6) for k, v in terms.items()},
                    "sec_per_step": round((time.time() - started) / (done - self.start), 4),
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
            if done % config.ckpt_every == 0 or done == end:
                last_good = self._checkpoint(done)
            bar(done, loss.item())
        if log is not None:
            log.close()
        bar(None, None)
        summary = {
            "steps": config.steps,
            "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])) if losses else None,
            "seconds": round(time.time() - started, 2),
            "config_hash": config_hash(config),
            "world": self.world,
        }
        if self.rank == 0 and end == config.steps:
            (self.out / "done.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def _distributed() -> tuple[int, int, torch.device]:
    """(world size, rank, device); joins the torchrun process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return world, rank, torch.device("cuda", local)
    return world, rank, torch.device("cpu")


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


def train(config: RunConfig, out: str | Path, resume: bool = False, progress: bool = False) -> dict:
    """Train (or resume) the run ``config`` in folder ``out``; returns the done.json summary."""
    return Trainer(config, out, resume=resume, progress=progress).run()


def checkpoint_step(folder: str | Path) -> int:
    """The step of a run's newest checkpoint (0 when there is none)."""
    path = latest_checkpoint(folder)
    return int(path.stem.split("-")[1]) if path else 0
