"""The one shared trainable's loop: epochs of steps on the run ``trainables.run.build`` made,
each epoch's metrics on the valid split, non-finite losses handled.

``run_training`` is the plain training function: the standalone ``train`` command, benchmarks
and tests call it with their own ``report``; ``trainables.trial.trainable`` is the Ray Tune
function trainable that every trial runs around it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import torch

from trainables.artifacts import GRAD_ACCUMULATION, MICRO_BATCH, CheckpointPolicy
from trainables.config import EPOCHS_AFTER_WARMUP, TrainConfig
from trainables.eval import heatmap
from trainables.eval.inference import errors_mm
from trainables.eval.metrics import summarize
from trainables.losses import create_loss
from trainables.memory import MemoryCap, OutOfMemory, is_out_of_memory, out_of_memory
from trainables.run import Run, build

# On CUDA the loss is read back (a host-GPU sync) only every NAN_CHECK_EVERY steps: for the
# finiteness check and for ``on_step``. On CPU reading it costs nothing, so it is every step.
NAN_CHECK_EVERY = 10
# With fp16 loss scaling a run fails as ``nan_loss`` after this many non-finite step losses in
# a row (across epochs), or an epoch without a finite one. An overflow is one step that the
# GradScaler skips while it halves its scale; ten in a row means the scale fell 1024x without
# recovering, or the weights are no longer finite: a divergence, not an overflow. Without a
# scaler (fp32, bf16) nothing skips the step, so the first non-finite loss fails the run.
NAN_PATIENCE = 10
# On CUDA each epoch also reports the peak GPU memory its tensors took (GiB; torch's allocator,
# so per trial even where ``nvidia-smi`` lists no processes, as in a container).
GPU_PEAK_GB = "gpu_peak_gb"

State = Callable[[], dict[str, Any]]
Report = Callable[[dict[str, Any], State], None]


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the trial stops instead of burning epochs."""

    reason = "nan_loss"


def train_epoch(run: Run, on_step: Callable[[float], None] | None = None) -> dict[str, float]:
    """One pass over the train split; returns loss, throughput and the data-wait fraction.

    ``train_loss`` is the mean over the steps whose loss was finite; ``nonfinite_steps``
    counts the others (fp16 overflows, which the GradScaler skips). ``on_step`` gets the
    current step's loss whenever it is read back (every step on CPU, every
    ``NAN_CHECK_EVERY`` on CUDA).
    """
    model, cfg = run.model, run.cfg
    model.train()
    run.train.set_epoch(run.epoch)
    run.shuffle.manual_seed(cfg.seed * 100_003 + run.epoch)  # same order after a resume
    loss_fn = create_loss(cfg)
    device = run.precision.device
    check_every = NAN_CHECK_EVERY if device.type == "cuda" else 1
    patience = NAN_PATIENCE if run.scaler.is_enabled() else 1
    # Accumulated on the device, so that a step needs no host sync.
    total = torch.zeros((), device=device)
    counted = torch.zeros((), device=device)
    nonfinite = torch.zeros((), dtype=torch.long, device=device)
    streak = torch.full((), run.nonfinite_streak, dtype=torch.long, device=device)
    # Throughput and data wait are steady-state figures: from the end of the first step on, so
    # that the iterator reset, the workers' start-up and the first batch (and on CUDA the first
    # kernels' set-up) are left out. An epoch of one step reports that step alone, its fetch
    # left out.
    count, waited, steps = 0, 0.0, 0
    start = first_fetched = 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batches = iter(run.loader)
    while True:
        fetch = time.perf_counter()
        try:
            images, coords, _, draws = next(batches)
        except StopIteration:
            break
        if steps:
            waited += time.perf_counter() - fetch
        else:
            first_fetched = time.perf_counter()
        # Augmented where the step runs: the batch came as uint8 with its draws.
        images = run.train.images(images.to(device, non_blocking=True), draws)
        images = run.precision.batch(images)
        value = fitted_step(run, loss_fn, images, coords.to(device, non_blocking=True))
        finite = torch.isfinite(value)
        total += torch.where(finite, value, 0.0) * len(images)
        counted += finite * len(images)
        nonfinite += ~finite
        streak = torch.where(finite, 0, streak + 1)
        steps += 1
        if steps == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()  # once an epoch: the clock starts after the first step
            first, start = len(images), time.perf_counter()
        else:
            count += len(images)
        if steps % check_every == 0:
            check_finite(int(streak.item()), patience, run.epoch)
            if on_step is not None:
                on_step(value.item())
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    if steps == 1:
        count, elapsed = first, start - first_fetched
    run.nonfinite_streak = int(streak.item())
    check_finite(run.nonfinite_streak, patience, run.epoch)
    if steps and counted.item() == 0:
        raise NonFiniteLoss(f"nan_loss: no finite training loss in epoch {run.epoch}")
    metrics = {
        "train_loss": (total / counted.clamp(min=1)).item(),
        "nonfinite_steps": int(nonfinite.item()),
        "samples_per_s": count / elapsed if steps else 0.0,
        "data_wait_frac": waited / elapsed if steps else 0.0,
    }
    if device.type == "cuda":  # what the trial's process held on its GPU, read from the device
        metrics[GPU_PEAK_GB] = torch.cuda.max_memory_allocated(device) / 2**30
    return metrics


def fitted_step(
    run: Run, loss_fn: Callable, images: torch.Tensor, coords: torch.Tensor
) -> torch.Tensor:
    """``train_step``, and when it runs out of memory the same batch again with half the
    micro-batch (twice the gradient accumulation: the same effective batch), down to a
    micro-batch of 1; only then is the error raised. The run keeps the smaller micro-batch."""
    while True:
        try:
            return train_step(run, loss_fn, images, coords)
        except (RuntimeError, MemoryError) as err:
            if run.micro_batch == 1 or not is_out_of_memory(err):
                raise
        # Outside the handler: the failed pass's tensors died with its traceback. Nothing has
        # changed the weights, the optimiser or the schedule (they step after every part).
        run.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if run.precision.device.type == "cuda":
            torch.cuda.empty_cache()
        run.micro_batch = max(1, min(run.micro_batch, len(images)) // 2)


def train_step(
    run: Run, loss_fn: Callable, images: torch.Tensor, coords: torch.Tensor
) -> torch.Tensor:
    """One optimisation step on a batch already on the device: targets, forward, loss, scaled
    backward (over the batch's parts of ``run.micro_batch`` samples, each part's loss weighted
    by its share of the batch and the gradients accumulated), optimiser and schedule. With one
    part it is the plain step. Returns the detached loss; reads nothing back to the host (the
    GradScaler finds overflows on the device with the fused AdamW)."""
    model = run.model
    width, height = run.size.heatmap(model.stride)
    target = heatmap.encode(heatmap.to_heatmap(coords, model.stride), height, width, run.sigma)
    run.optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=images.device)
    for start in range(0, len(images), run.micro_batch):
        part = slice(start, start + run.micro_batch)  # views: nothing is copied
        with run.precision.autocast():
            outputs = model(images[part])
        # Intermediate supervision: a model may return one heatmap per stack.
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        loss = sum(loss_fn(out, target[part]) for out in outputs) / len(outputs)
        loss = loss * (len(images[part]) / len(images))
        run.scaler.scale(loss).backward()
        total += loss.detach()
        del outputs, loss  # before the next part's forward
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return total


def check_finite(streak: int, patience: int, epoch: int) -> None:
    """Fail the run once ``patience`` step losses in a row were not finite."""
    if streak >= patience:
        steps = "a step" if streak == 1 else f"{streak} steps in a row"
        raise NonFiniteLoss(f"nan_loss: non-finite training loss for {steps} (epoch {epoch})")


def run_training(
    cfg: TrainConfig,
    report: Report,
    resume: dict[str, Any] | None = None,
    on_step: Callable[[float], None] | None = None,
    device: str | None = None,
) -> Run:
    """Train until ``cfg.epochs``; after each epoch call ``report(metrics, state)``.

    ``state`` is a thunk returning the checkpoint (a reporter saves it when
    ``should_checkpoint``). ``resume`` is a checkpoint to continue from, from any device or
    precision. ``device`` defaults to CUDA when this process sees a GPU; a Ray trial passes
    the one its resources give it. ``metrics`` also carry the resolved ``precision`` and
    ``device`` (text). The run's ``best`` follows the config's ``CheckpointPolicy``. Running
    out of memory (``cpu_memory_gb``, the GPU's or the machine's)
    raises ``OutOfMemory`` (``oom: …``).
    """
    where = "build"
    policy = CheckpointPolicy.of(cfg)
    try:
        run = build(cfg, device)
        if resume is not None:
            run.restore(resume)
        # Capped from here: importing torch's and timm's modules while building is no part of
        # what a configuration costs, and would fail anywhere under a small cap. The cap holds
        # over each epoch's training and validation, not over its report.
        cap = MemoryCap(cfg.cpu_memory_gb)
        while run.epoch < cfg.epochs:
            run.epoch += 1
            where = f"epoch {run.epoch}"
            with cap.held():
                run.resize(cfg.size_at(run.epoch))
                metrics = train_epoch(run, on_step)
                errors = errors_mm(run.model, run.valid, run.precision, run.micro_batch)
            metrics.update(summarize(errors))
            metrics.update(lr=run.scheduler.get_last_lr()[0], epoch=run.epoch, **run.resolved())
            metrics.update({MICRO_BATCH: run.micro_batch, GRAD_ACCUMULATION: run.accumulation})
            metrics["input_px"] = float(run.size.long_side)
            metrics[EPOCHS_AFTER_WARMUP] = max(0, run.epoch - cfg.warmup_epochs)
            if policy.improves(metrics, run.best):
                run.best = policy.value(metrics)
            report(metrics, run.state)
    except (RuntimeError, MemoryError) as err:
        if isinstance(err, OutOfMemory) or not is_out_of_memory(err):
            raise
        if where != "build":  # the steps shrank their micro-batch as far as it goes first
            where += f", micro-batch {run.micro_batch}"
        raise out_of_memory(err, where) from err
    return run


def should_checkpoint(cfg: TrainConfig, epoch: int) -> bool:
    """Every ``checkpoint_every`` epochs and the last one; never when it is 0."""
    every = cfg.checkpoint_every
    return every > 0 and (epoch % every == 0 or epoch == cfg.epochs)
