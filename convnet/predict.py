"""Label image files with a trained checkpoint: what detect.py does, as functions.

  collect_inputs   files, folders (recursively) and globs -> image paths, plus the arguments
                   that named nothing usable (reported per argument, the rest still run)
  prepare_images   decode + preprocess (convnet.preprocess) in a pool of worker processes,
                   results in input order, streamed
  label_images     one model call per batch of prepared images -> Prediction per file
  format_text / format_json   one line per file
  plot_predictions the --plot figure: input, what the model saw, class probabilities
"""
from __future__ import annotations

import glob
import json
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .cli import atomic_write
from .preprocess import MAX_PIXELS, ImageError, load_and_prepare, read_gray

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                  ".pgm", ".ppm", ".pbm", ".pnm"}
PREVIEW_SIZE = 160     # longest side of the input thumbnail kept for --plot
POOL_THRESHOLD = 8     # fewer images than this are prepared in-process (no pool start-up)


@dataclass
class Prediction:
    """The answer for one file. `error` set: the file failed; `top` empty: no ink (blank)."""
    path: str
    top: list[tuple[int, float]] = field(default_factory=list)   # (class index, probability)
    error: str | None = None
    model_input: np.ndarray | None = None   # the uint8 image the model saw (kept for --plot)
    preview: np.ndarray | None = None       # a small copy of the input (kept for --plot)
    probabilities: np.ndarray | None = None

    @property
    def blank(self) -> bool:
        return self.error is None and not self.top


def collect_inputs(arguments: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand files, folders (recursively, image suffixes only) and glob patterns, in the order
    given, without duplicates. Returns (paths, [(argument, why it gave no image), ...])."""
    paths: list[str] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        if path not in seen:
            seen.add(path)
            paths.append(path)

    for argument in arguments:
        candidate = Path(argument)
        if candidate.is_dir():
            found = sorted(str(p) for p in candidate.rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                problems.append((argument, "directory holds no images"))
            for path in found:
                add(path)
        elif candidate.exists():
            add(argument)  # named explicitly: try it whatever its suffix
        elif glob.has_magic(argument):
            matches = sorted(p for p in glob.glob(argument, recursive=True) if Path(p).is_file())
            if not matches:
                problems.append((argument, "no file matches this pattern"))
            for path in matches:
                add(path)
        else:
            problems.append((argument, "file not found"))
    return paths, problems


def _prepare_one(task: tuple[str, int, int, bool]):
    """Worker: (path, image_size, max_pixels, want_preview) -> (Prepared, preview) or error text."""
    path, image_size, max_pixels, want_preview = task
    try:
        prepared = load_and_prepare(path, image_size, max_pixels)
        preview = _preview(path) if want_preview else None
        return prepared, preview
    except ImageError as err:
        return str(err)
    except Exception as err:  # one odd file must not stop a folder of thousands
        return f"could not be processed ({type(err).__name__}: {str(err)[:120]})"


def _preview(path: str) -> np.ndarray:
    from skimage.transform import resize

    gray = read_gray(path)
    scale = PREVIEW_SIZE / max(gray.shape)
    if scale < 1:
        shape = tuple(max(1, int(side * scale)) for side in gray.shape)
        gray = resize(gray, shape, anti_aliasing=True, preserve_range=True)
    return gray


def prepare_images(paths: list[str], image_size: int, workers: int,
                   max_pixels: int = MAX_PIXELS, want_preview: bool = False) -> Iterator:
    """Yield, in input order, (Prepared, preview) or an error string for each path."""
    tasks = [(path, image_size, max_pixels, want_preview) for path in paths]
    if workers <= 1 or len(paths) < POOL_THRESHOLD:
        yield from map(_prepare_one, tasks)
        return
    # fork: workers start instantly and inherit the imports. The pool is created before the
    # parent runs any torch computation, so no torch thread pool exists yet to be forked.
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    chunk = max(1, min(64, len(tasks) // (workers * 8)))
    with context.Pool(workers) as pool:
        yield from pool.imap(_prepare_one, tasks, chunksize=chunk)


def label_images(paths: list[str], model, checkpoint: dict, device, batch_size: int = 256,
                 workers: int = 1, topk: int = 1, keep_images: bool = False,
                 max_pixels: int = MAX_PIXELS) -> Iterator[Prediction]:
    """Prepare every file and run the model once per batch; yield a Prediction per path, in order."""
    import torch

    from .model import to_model_input

    image_size = int(checkpoint["image_size"])
    normalize = checkpoint["normalize"]
    pending: list[Prediction] = []    # in input order, waiting for their batch to be run
    batch: list[np.ndarray] = []      # model inputs of the pending, non-blank, non-failed ones
    batch_owners: list[Prediction] = []

    def run_batch() -> Iterator[Prediction]:
        if batch:
            inputs = to_model_input(torch.from_numpy(np.stack(batch)), normalize).to(device)
            with torch.inference_mode():
                probabilities = torch.softmax(model(inputs).float(), dim=1).cpu().numpy()
            k = min(topk, probabilities.shape[1])
            for owner, probs in zip(batch_owners, probabilities):
                order = np.argsort(-probs)[:k]
                owner.top = [(int(i), float(probs[i])) for i in order]
                if keep_images:
                    owner.probabilities = probs
        yield from pending
        pending.clear()
        batch.clear()
        batch_owners.clear()

    for path, result in zip(paths, prepare_images(paths, image_size, workers, max_pixels,
                                                  want_preview=keep_images)):
        prediction = Prediction(path=path)
        if isinstance(result, str):
            prediction.error = result
        else:
            prepared, preview = result
            if keep_images:
                prediction.model_input, prediction.preview = prepared.pixels, preview
            if prepared.pixels is not None:
                batch.append(prepared.pixels)
                batch_owners.append(prediction)
        pending.append(prediction)
        if len(batch) >= batch_size:
            yield from run_batch()
    yield from run_batch()


def format_text(prediction: Prediction, class_names: list[str]) -> str:
    """`image.png: 7 (99.2%)`, with the runners-up after `;` when --topk > 1."""
    if prediction.blank:
        return f"{prediction.path}: no digit found (blank image)"
    (best, probability), *others = prediction.top
    line = f"{prediction.path}: {class_names[best]} ({probability:.1%})"
    if others:
        line += "; next: " + ", ".join(f"{class_names[i]} ({p:.1%})" for i, p in others)
    return line


def format_json(prediction: Prediction, class_names: list[str]) -> str:
    """One JSON object: path, label (int or null when blank), name, confidence, top, blank."""
    if prediction.blank:
        record = {"path": prediction.path, "label": None, "name": None, "confidence": None,
                  "top": [], "blank": True}
    else:
        best, probability = prediction.top[0]
        record = {"path": prediction.path, "label": best, "name": class_names[best],
                  "confidence": round(probability, 6),
                  "top": [[i, round(p, 6)] for i, p in prediction.top], "blank": False}
    return json.dumps(record)


def plot_predictions(predictions: list[Prediction], class_names: list[str],
                     out_path: str | Path) -> None:
    """One row per image: the input as given, the 28x28 the model saw, the class probabilities."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(predictions)
    figure, axes = plt.subplots(rows, 3, figsize=(8, 1.9 * rows), squeeze=False,
                                gridspec_kw={"width_ratios": [1, 1, 2.4]})
    for (original, seen, bars), prediction in zip(axes, predictions):
        name = Path(prediction.path).name
        if prediction.preview is not None:
            original.imshow(prediction.preview, cmap="gray")
        original.set_title(name, fontsize=8)
        if prediction.model_input is not None:
            seen.imshow(prediction.model_input, cmap="gray", vmin=0, vmax=255)
        seen.set_title("model input", fontsize=8)
        for ax in (original, seen):
            ax.set_xticks([])
            ax.set_yticks([])
        if prediction.probabilities is not None:
            best = int(np.argmax(prediction.probabilities))
            colors = ["tab:blue"] * len(class_names)
            colors[best] = "tab:orange"
            bars.bar(range(len(class_names)), prediction.probabilities, color=colors)
            bars.set_title(f"{class_names[best]} ({prediction.probabilities[best]:.1%})", fontsize=9)
        else:
            bars.text(0.5, 0.5, "no digit found" if prediction.blank else prediction.error or "",
                      ha="center", va="center", fontsize=8, transform=bars.transAxes)
        bars.set_xticks(range(len(class_names)))
        bars.set_xticklabels(class_names, fontsize=7, rotation=45 if max(map(len, class_names)) > 2 else 0)
        bars.set_ylim(0, 1)
        bars.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    with atomic_write(out_path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    plt.close(figure)


def resolve_device(name: str):
    """'auto' -> cuda if present, else mps, else cpu; an explicit device must exist."""
    import torch

    from .cli import UserError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device name (try cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: this machine has no usable CUDA GPU (see verify_torch_GPU.py)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: MPS (Apple GPU) is not available here")
    return device
