"""The ConvNet and the one checkpoint format that main.py writes and detect.py reads.

A checkpoint is a plain dict (loadable with torch.load(path, weights_only=True)):
  format          CHECKPOINT_FORMAT
  model           the state_dict detect.py uses: the weight average when the run kept one
                  (main.py --ema-horizon), else the last weights
  training_model, average_updates   with a weight average: the weights being trained and the
                  average's update count, for --resume
  model_args      keyword arguments that rebuild the network: ConvNet(**model_args)
  class_names     one name per class index
  image_size      side of the square input, in pixels
  normalize       {"mean": float, "std": float} applied to pixels scaled to 0..1
  epoch, epochs   epochs done, epochs planned
  batches_done    batches of epoch+1 already trained (non-zero only after Ctrl-C/SIGTERM)
  optimizer, scheduler, rng   state for --resume
  history         one dict per finished epoch (losses, accuracy, time), as in metrics.csv
  test_accuracy   on the test list, after the last finished epoch (None if not evaluated)
  config          the run's settings (main.py's arguments)
  versions        python, torch, torchvision
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .cli import UserError, atomic_write

CHECKPOINT_FORMAT = "convnet-checkpoint-v1"
DEFAULT_CHECKPOINT = Path("checkpoints") / "mnist_cnn.pt"


class ConvNet(nn.Module):
    """Stages of k x k convolutions (BatchNorm, ReLU), then dropout and a linear classifier
    (with one hidden layer of `hidden` units when hidden > 0).

    `widths` sets the stages and their channel counts. Each stage halves the picture with a
    2x2 max-pool after its convolutions, or, when `strides` is given, its first convolution
    moves by that stride instead and there is no pooling: a stride-2 convolution computes a
    quarter of the positions, which is what makes the quick preset fast on a CPU.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 widths: tuple[int, ...] = (32, 64), convs_per_stage: int = 2,
                 dropout: float = 0.25, kernel_size: int = 3, hidden: int = 0,
                 strides: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if strides is not None and len(strides) != len(widths):
            raise ValueError(f"{len(strides)} strides given for {len(widths)} stages")
        # What rebuilds this network; saved in the checkpoint as model_args.
        self.model_args = {"num_classes": num_classes, "in_channels": in_channels,
                           "image_size": image_size, "widths": list(widths),
                           "convs_per_stage": convs_per_stage, "dropout": dropout,
                           "kernel_size": kernel_size, "hidden": hidden,
                           "strides": list(strides) if strides is not None else None}
        layers: list[nn.Module] = []
        channels, side = in_channels, image_size
        for stage, width in enumerate(widths):
            for index in range(convs_per_stage):
                stride = strides[stage] if strides is not None and index == 0 else 1
                layers += [nn.Conv2d(channels, width, kernel_size, stride=stride,
                                     padding=kernel_size // 2, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels = width
                side = (side + 2 * (kernel_size // 2) - kernel_size) // stride + 1
            if strides is None:
                layers.append(nn.MaxPool2d(2))
                side //= 2
        self.features = nn.Sequential(*layers)
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(widths)} downsampling stages")
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        features = channels * side * side
        if hidden:
            head += [nn.Linear(features, hidden), nn.ReLU(inplace=True)]
            features = hidden
        self.classifier = nn.Sequential(*head, nn.Linear(features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def to_model_input(images: torch.Tensor, normalize: dict[str, float],
                   augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 images [N, H, W] (0 = background) -> normalised float [N, 1, H, W], as the model expects.

    `augment` (training only) transforms the batch on the 0..1 scale, before normalising, where
    0 is still the background that a shift or a shrink uncovers.
    """
    x = images.unsqueeze(1).float().div_(255.0)
    if augment is not None:
        x = augment(x)
    return x.sub_(normalize["mean"]).div_(normalize["std"])


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write the checkpoint atomically: a crash leaves the previous file intact."""
    with atomic_write(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (weights_only: a pickle carrying code is refused, never run)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found (train one with `python main.py`)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: checkpoint file is empty")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise UserError(f"{path}: refused to load: the file holds objects other than plain weights, "
                        f"which could run code ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a readable PyTorch checkpoint (truncated or damaged?): {first[:160]}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a checkpoint written by main.py (no '{CHECKPOINT_FORMAT}' marker)")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> ConvNet:
    """Rebuild the network from model_args alone and load its weights (eval mode, on the CPU)."""
    try:
        model = ConvNet(**checkpoint["model_args"])
        model.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{path}: weights do not fit the network described in the checkpoint "
                        f"(different architecture or number of classes?): {first[:160]}") from None
    return model.eval()
