"""The training loop behind main.py: one process, or several under torchrun (DDP).

One run: load the data (decoded once, cached), build ConvNet(**model_args), train with AdamW and
a one-cycle learning rate (warm-up, then decay to ~0) for a fixed number of epochs, augmenting
whole batches on the device (random rotation, scale, shift), evaluate on the test list after
each epoch (for the log only: nothing is chosen on it), save a checkpoint after each epoch, and
end with the run folder's metrics and plots. The saved model is the one at the end of the
schedule: with --ema-horizon, the moving average of the weights over the run's last steps
(what is evaluated, logged and saved), else the last weights.

Under `torchrun --nproc_per_node=N main.py ...` (RANK/WORLD_SIZE/LOCAL_RANK set) each process
trains on its shard of every epoch with DistributedDataParallel (gloo on CPU, nccl on CUDA);
losses and counts are summed across processes; rank 0 alone prints and writes files.

Ctrl-C / SIGTERM stop at the next batch: a resumable checkpoint is written and the process
exits with 130 / 143 after saying how to resume.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import datetime
import itertools
import math
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchvision
from torch import nn
from tqdm import tqdm

from . import data as data_module
from .cli import UserError, atomic_write
from .model import CHECKPOINT_FORMAT, ConvNet, load_checkpoint, save_checkpoint, to_model_input

# How long a process waits for the others in one collective before the run fails (instead of
# hanging): long enough for rank 0 to decode a data set while the others wait at the barrier.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=10)
EVAL_BATCH_SIZE = 2000


@dataclass
class Config:
    """A run's settings (main.py's flags after the preset is applied); saved in the checkpoint."""
    data_dir: str = "data"
    checkpoint: str = "checkpoints/mnist_cnn.pt"
    run_dir: str = ""
    epochs: int = 16
    batch_size: int = 128
    lr: float = 4e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    widths: tuple[int, ...] = (16, 32, 64)
    convs_per_stage: int = 2
    kernel_size: int = 3
    hidden: int = 256
    strides: tuple[int, ...] | None = None
    dropout: float = 0.1
    ema_horizon: float = 0.125   # fraction of the steps the weight average spans; 0 = last weights
    augment: bool = True
    bf16: bool = True            # CPU only: bfloat16 autocast where the processor has it natively
    max_rotation: float = 0.0    # degrees
    max_scale: float = 0.0       # zoom in/out by up to this fraction
    max_shift: float = 2.0       # pixels
    image_size: int | None = None
    val_size: int = 0
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    workers: int = 0
    normalize: dict[str, float] = field(default_factory=lambda: {"mean": 0.1307, "std": 0.3081})


# ----------------------------------------------------------------------------- setup

@dataclass
class Dist:
    """Where this process stands in a torchrun job (rank 0 of 1 without torchrun)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Dist:
    """Join the torchrun process group when torchrun launched us; otherwise a 1-process Dist."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Dist()
    info = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend, timeout=PROCESS_GROUP_TIMEOUT)
    return info


def pick_device(name: str) -> str:
    """'auto' -> cuda when available, else mps, else cpu; an unavailable choice is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available to this PyTorch")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: Apple's MPS backend is not available here")
    return name


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where oneDNN runs bfloat16 convolutions faster than
    float32 (benchmarks/bench_step.py: about 2x the default network's float32 steps here);
    elsewhere bf16 would be emulated, slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_writable(path: Path, what: str) -> None:
    """Fail now, not after an hour of training, when an output folder cannot be written."""
    folder = path if what == "run folder" else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UserError(f"{folder}: cannot write the {what} there ({err.strerror})") from None


# ----------------------------------------------------------------------------- augmentation

def augment_batch(x: torch.Tensor, config: Config, generator: torch.Generator) -> torch.Tensor:
    """Random rotation, scale and shift of a whole batch [N, 1, H, W] in one grid_sample.

    Pixels must still be on the 0..1 scale, where 0 is background: grid_sample fills the
    border that a shift or a shrink uncovers with zeros.
    """
    n, size = x.shape[0], x.shape[-1]
    uniform = torch.rand(n, 4, generator=generator, device=x.device) * 2 - 1  # in [-1, 1)
    angle = uniform[:, 0] * math.radians(config.max_rotation)
    scale = 1 + uniform[:, 1] * config.max_scale
    shift = uniform[:, 2:] * (2 * config.max_shift / size)  # pixels -> the grid's [-1, 1] units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def prepare_batch(images: torch.Tensor, config: Config, generator: torch.Generator | None,
                  channels_last: bool) -> torch.Tensor:
    """The model's input for a batch (as detect.py prepares it), augmented when a generator is given."""
    augment = None if generator is None else (lambda batch: augment_batch(batch, config, generator))
    x = to_model_input(images, config.normalize, augment)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# ----------------------------------------------------------------------------- weight average

class WeightAverage:
    """A moving average of a model's weights (and BatchNorm statistics) over the last `fraction`
    of the steps so far: after t updates, the newest weights count 1 / (1 + fraction * t).

    An exponential average whose horizon grows with the run: it follows the weights closely in
    the first epochs (a fixed horizon of ~1,000 steps would still hold the random start there),
    spans about fraction * steps at the end whatever the run's length, and fraction 1 is the
    plain mean of all steps (as in SWA). It evens out the noise of the last steps.

    What torch.optim.swa_utils.AveragedModel does, minus its per-step copy of the update count
    to the GPU, which waits for the GPU at every step (a stream synchronisation).
    """

    def __init__(self, model: nn.Module, fraction: float) -> None:
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.fraction = fraction
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        share = 1 / (1 + self.fraction * self.updates)
        averaged = itertools.chain(self.model.parameters(), self.model.buffers())
        for mean, value in zip(averaged, itertools.chain(model.parameters(), model.buffers())):
            if mean.is_floating_point():
                mean.lerp_(value, share)  # share 1 on the first update: a copy
            else:  # BatchNorm's batch counter
                mean.copy_(value)
        self.updates += 1


# ----------------------------------------------------------------------------- stopping

class StopRequest:
    """Turns the first Ctrl-C or SIGTERM into a flag the loop checks after each batch."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: object) -> None:
        if self.signal_number is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop right now
        self.signal_number = number

    def agreed(self, info: Dist, device: str) -> bool:
        """True when any process was asked to stop: all processes stop at the same batch."""
        if not info.enabled:
            return self.signal_number is not None
        flag = torch.tensor([float(self.signal_number is not None)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


# ----------------------------------------------------------------------------- evaluation

@torch.inference_mode()
def evaluate(model: nn.Module, loader: data_module.TensorLoader, config: Config, info: Dist,
             channels_last: bool, keep_predictions: bool = False) -> dict[str, Any]:
    """Mean loss and accuracy over the whole split (summed across processes).

    Always in float32, even when training uses bfloat16 or float16: it is how detect.py computes,
    so the accuracy saved in the checkpoint is the one detect.py gets on the same images.
    """
    model.eval()
    device = loader.images.device
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    predictions = []
    for images, labels in loader:
        logits = model(prepare_batch(images, config, None, channels_last))
        loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        predicted = logits.argmax(1)
        totals += torch.stack([loss.double(), (predicted == labels).sum().double(),
                               torch.tensor(len(labels), dtype=torch.float64, device=device)])
        if keep_predictions:
            predictions.append(predicted.cpu())
    if info.enabled:
        dist.all_reduce(totals)
    loss_sum, correct, count = totals.tolist()
    result = {"loss": loss_sum / count, "accuracy": correct / count}
    if keep_predictions:
        result["predictions"] = torch.cat(predictions)
    return result


# ----------------------------------------------------------------------------- the run

def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__)}


def write_metrics(history: list[dict[str, float]], path: Path) -> None:
    """One CSV row per finished epoch, rewritten whole (atomically) after each epoch."""
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def make_checkpoint(model: nn.Module, averaged: WeightAverage | None, optimizer: torch.optim.Optimizer,
                    scheduler: Any, config: Config, class_names: list[str], image_size: int, epoch: int,
                    batches_done: int, history: list[dict[str, float]],
                    test_accuracy: float | None) -> dict[str, Any]:
    """The checkpoint dict documented in model.py (plain data: loadable with weights_only).

    "model" holds the weights detect.py uses (the average when there is one); a run with a
    weight average also keeps the weights being trained, and the average's update count, to resume.
    """
    averaging = {} if averaged is None else {"training_model": model.state_dict(),
                                             "average_updates": averaged.updates}
    return {
        "format": CHECKPOINT_FORMAT,
        "model": (model if averaged is None else averaged.model).state_dict(),
        **averaging,
        "model_args": model.model_args,
        "class_names": class_names,
        "image_size": image_size,
        "normalize": dict(config.normalize),
        "epoch": epoch,
        "epochs": config.epochs,
        "batches_done": batches_done,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "history": history,
        "test_accuracy": test_accuracy,
        "config": {key: list(value) if isinstance(value, tuple) else value
                   for key, value in asdict(config).items()},
        "versions": versions(),
    }


def config_from_checkpoint(checkpoint: dict[str, Any], overrides: dict[str, Any]) -> Config:
    """The resumed run's settings: the checkpoint's, except where it is run (device, threads)."""
    saved = dict(checkpoint["config"])
    saved.setdefault("ema_horizon", 0.0)  # checkpoints from before the weight average saved the last weights
    saved["widths"] = tuple(saved["widths"])
    if saved.get("strides") is not None:
        saved["strides"] = tuple(saved["strides"])
    saved.update(overrides)
    return Config(**saved)


def train(config: Config, resume: str | None = None) -> int:
    """Run (or resume) one training; returns the process exit status."""
    device_kind = pick_device(config.device)
    info = init_distributed(device_kind)
    try:
        return _train(config, resume, info, device_kind)
    finally:
        if info.enabled:
            dist.destroy_process_group()


def _train(config: Config, resume: str | None, info: Dist, device_kind: str) -> int:
    started = time.perf_counter()
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(resume)
        config = config_from_checkpoint(checkpoint, {"device": config.device, "threads": config.threads,
                                                     "checkpoint": config.checkpoint or resume,
                                                     "workers": config.workers})
    device = f"cuda:{info.local_rank}" if device_kind == "cuda" else device_kind
    if device_kind == "cpu":
        # Torch already uses one thread per core; several processes on one machine share them.
        torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // info.world_size))
    cuda = device_kind == "cuda"
    torch.backends.cudnn.benchmark = cuda
    if not config.run_dir:
        config.run_dir = str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    checkpoint_path, run_dir = Path(config.checkpoint), Path(config.run_dir)
    say = tqdm.write if info.main else (lambda *args, **kwargs: None)
    if info.main:
        check_writable(checkpoint_path, "checkpoint")
        check_writable(run_dir, "run folder")

    # Data: rank 0 decodes (and caches) first, so the other processes only read the cache.
    if info.enabled and not info.main:
        dist.barrier()
    train_set, test_set, class_names = data_module.load_data(config.data_dir, config.image_size,
                                                             config.workers or None)
    if info.enabled and info.main:
        dist.barrier()
    eval_set = test_set  # what the per-epoch log reports: the test list, or held-out images
    if config.val_size:
        train_set, eval_set = data_module.split_validation(train_set, config.val_size, config.seed)
    image_size = train_set.images.shape[-1]
    if checkpoint is not None and len(class_names) != len(checkpoint["class_names"]):
        raise UserError(f"{resume}: trained on {len(checkpoint['class_names'])} classes, "
                        f"but {config.data_dir} has {len(class_names)}")
    eval_name = "val" if config.val_size else "test"

    torch.manual_seed(config.seed)
    try:
        model = ConvNet(num_classes=len(class_names), image_size=image_size, widths=config.widths,
                        convs_per_stage=config.convs_per_stage, dropout=config.dropout,
                        kernel_size=config.kernel_size, hidden=config.hidden, strides=config.strides)
    except ValueError as err:  # e.g. more downsampling stages than the image size allows
        raise UserError(f"--widths/--strides: {err}") from None
    # channels_last: a win for cuDNN, and on the CPU oneDNN's pooling and BatchNorm run
    # 1.1-1.4x faster per step with the fused AdamW (measured on 2 cores, benchmarks/bench_step.py).
    channels_last = device_kind in ("cuda", "cpu")
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    train_loader = data_module.TensorLoader(train_set, config.batch_size // info.world_size, True,
                                            config.seed, info.rank, info.world_size, device)
    eval_loader = data_module.TensorLoader(eval_set, EVAL_BATCH_SIZE, False, 0,
                                           info.rank, info.world_size, device)
    steps_per_epoch = len(train_loader)
    # fused: one kernel for all parameters instead of a dozen small ops each (~20% of a CPU step).
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=device_kind in ("cuda", "cpu"))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=config.epochs * steps_per_epoch,
                                                    pct_start=0.25 if config.epochs > 1 else 0.2)
    averaged = WeightAverage(model, config.ema_horizon) if config.ema_horizon > 0 else None
    start_epoch, start_batch, history = 0, 0, []
    if checkpoint is not None:
        if averaged is None:
            model.load_state_dict(checkpoint["model"])
        else:
            model.load_state_dict(checkpoint["training_model"])
            averaged.model.load_state_dict(checkpoint["model"])
            averaged.updates = checkpoint["average_updates"]
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        start_epoch, start_batch = checkpoint["epoch"], checkpoint["batches_done"]
        history = list(checkpoint["history"])
        say(f"resuming {resume}: epoch {start_epoch + 1}/{config.epochs}, batch {start_batch}")
    # Mixed precision on CUDA: bf16 where supported (no loss scaling needed), else fp16 + scaler.
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    autocast = torch.autocast("cuda", dtype=amp_dtype) if cuda else None
    if device_kind == "cpu" and config.bf16 and cpu_has_native_bf16():
        autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and amp_dtype == torch.float16)
    net = nn.parallel.DistributedDataParallel(model, device_ids=[info.local_rank] if cuda else None) \
        if info.enabled else model
    augment_generator = torch.Generator(device=device) if config.augment else None

    say(f"{len(train_set)} training and {len(eval_set)} {eval_name} images "
        f"({image_size}x{image_size}, {len(class_names)} classes) from {config.data_dir}; "
        f"{sum(p.numel() for p in model.parameters())} parameters; {device}"
        + (f" x {info.world_size} processes" if info.enabled else
           f", {torch.get_num_threads()} threads" if device_kind == "cpu" else "")
        + (", bfloat16" if autocast is not None and not cuda else ""))

    def save(epoch: int, batches_done: int, test_accuracy: float | None) -> None:
        if info.main:
            save_checkpoint(checkpoint_path, make_checkpoint(
                model, averaged, optimizer, scheduler, config, class_names, image_size, epoch,
                batches_done, history, test_accuracy))

    final_model = model if averaged is None else averaged.model  # what is evaluated and saved
    final_predictions = None
    with StopRequest() as stop:
        for epoch in range(start_epoch, config.epochs):
            train_loader.set_epoch(epoch)
            net.train()
            epoch_start = time.perf_counter()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            seen = 0
            bar = tqdm(train_loader.batches(start_batch), total=steps_per_epoch, initial=start_batch,
                       desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                       leave=False, disable=not info.main, dynamic_ncols=True)
            for step, (images, labels) in enumerate(bar, start=start_batch):
                if augment_generator is not None:
                    # Seeded per batch and process: a resumed run draws exactly the same batches.
                    augment_generator.manual_seed(
                        ((config.seed * 1009 + epoch) * 100_003 + step) * 97 + info.rank)
                x = prepare_batch(images, config, augment_generator, channels_last)
                with autocast or contextlib.nullcontext():
                    loss = F.cross_entropy(net(x).float(), labels, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if averaged is not None:
                    averaged.update(model)
                loss_sum += loss.detach().double() * len(labels)
                seen += len(labels)
                if info.main and step % 20 == 0:
                    rate = seen * info.world_size / max(time.perf_counter() - epoch_start, 1e-9)
                    bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.0f}")
                if stop.agreed(info, device):
                    bar.close()
                    start_batch = step + 1
                    save(epoch, start_batch, history[-1].get("test_accuracy") if history else None)
                    name = signal.Signals(stop.signal_number or signal.SIGTERM).name
                    if info.main:
                        print(f"stopped by {name} in epoch {epoch + 1}, batch {start_batch}/{steps_per_epoch}; "
                              f"saved {checkpoint_path}. Resume with: python main.py --resume {checkpoint_path}",
                              file=sys.stderr)
                    return 128 + (stop.signal_number or signal.SIGTERM)
            bar.close()
            start_batch = 0
            epoch_train_seconds = time.perf_counter() - epoch_start
            totals = torch.stack([loss_sum, torch.tensor(float(seen), dtype=torch.float64, device=device)])
            if info.enabled:
                dist.all_reduce(totals)
            # The last epoch's predictions on the test list also feed the plots (one pass, not two).
            keep = epoch + 1 == config.epochs and not info.enabled and not config.val_size
            result = evaluate(final_model, eval_loader, config, info, channels_last, keep_predictions=keep)
            final_predictions = result.get("predictions")
            history.append({"epoch": epoch + 1, "train_loss": round(totals[0].item() / totals[1].item(), 6),
                            f"{eval_name}_loss": round(result["loss"], 6),
                            f"{eval_name}_accuracy": round(result["accuracy"], 6),
                            "lr": round(scheduler.get_last_lr()[0], 8),
                            "train_seconds": round(epoch_train_seconds, 3),
                            "images_per_second": round(totals[1].item() / epoch_train_seconds, 1)})
            row = history[-1]
            say(f"epoch {epoch + 1:>2}/{config.epochs}  train loss {row['train_loss']:.4f}  "
                f"{eval_name} loss {row[eval_name + '_loss']:.4f}  {eval_name} acc {100 * row[eval_name + '_accuracy']:.2f}%  "
                f"{epoch_train_seconds:.1f} s  {row['images_per_second']:.0f} img/s")
            save(epoch + 1, 0, None if config.val_size else result["accuracy"])
            if info.main:
                write_metrics(history, run_dir / "metrics.csv")

    if info.main:
        test_accuracy = finish_run(final_model, test_set, config, class_names, history, run_dir, device,
                                   channels_last, final_predictions)
        save(config.epochs, 0, test_accuracy)
        print(f"test accuracy {100 * test_accuracy:.2f}% after {config.epochs} epochs; "
              f"training {sum(row['train_seconds'] for row in history):.1f} s, "
              f"whole run {time.perf_counter() - started:.1f} s; "
              f"saved {checkpoint_path} and {run_dir}/")
    return 0


def finish_run(model: nn.Module, test_set: data_module.ImageSet, config: Config, class_names: list[str],
               history: list[dict[str, float]], run_dir: Path, device: str, channels_last: bool,
               predictions: torch.Tensor | None) -> float:
    """Rank 0, after the last epoch: the plots a person wants to look at; returns test accuracy."""
    from . import plots  # matplotlib is only needed here

    if predictions is None:
        loader = data_module.TensorLoader(test_set, EVAL_BATCH_SIZE, False, device=device)
        predictions = evaluate(model, loader, config, Dist(), channels_last,
                               keep_predictions=True)["predictions"]
    labels = test_set.labels
    extras = [name for name, used in (("augmented", config.augment),
                                      ("label-smoothed", config.label_smoothing > 0)) if used]
    plots.plot_curves(history, run_dir / "curves.png",
                      "train" + (f" ({', '.join(extras)})" if extras else ""), averaged=config.ema_horizon > 0)
    plots.plot_confusion(labels, predictions, class_names, run_dir / "confusion_matrix.png")
    plots.plot_misclassified(test_set.images, labels, predictions, class_names, run_dir / "misclassified.png")
    return (predictions == labels).double().mean().item()
