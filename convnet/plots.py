"""The pictures a training run leaves in its run folder: curves, confusion matrix, mistakes.

All three are written atomically with matplotlib's non-interactive Agg backend, so a run on a
server without a display works and an interrupted run never leaves half a PNG.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, never need a display
import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from .cli import atomic_write  # noqa: E402

MAX_MISCLASSIFIED = 64
GRID_COLUMNS = 8


def _save(figure: plt.Figure, path: Path) -> None:
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def plot_curves(history: list[dict[str, float]], path: Path, train_label: str = "train",
                averaged: bool = False) -> None:
    """Loss (train and evaluation) and evaluation accuracy against the epoch. `train_label` says
    what makes the training loss differ from the evaluation one (augmentation, label smoothing);
    `averaged` that the evaluation is of the weight average, not of the weights being trained."""
    if not history:
        return
    eval_name = "val" if "val_loss" in history[0] else "test"
    averaged_note = " (weight average)" if averaged else ""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [row["train_loss"] for row in history], "o-", label=train_label)
    loss_axes.plot(epochs, [row[f"{eval_name}_loss"] for row in history], "o-", label=eval_name + averaged_note)
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    loss_axes.legend()
    accuracy_axes.plot(epochs, [100 * row[f"{eval_name}_accuracy"] for row in history], "o-", color="C1")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{eval_name.capitalize()} accuracy{averaged_note}")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    _save(figure, path)


def plot_confusion(labels: torch.Tensor, predictions: torch.Tensor, class_names: list[str],
                   path: Path) -> None:
    """Counts of (true class, predicted class); the diagonal is what the model got right."""
    num_classes = len(class_names)
    matrix = torch.bincount(labels * num_classes + predictions, minlength=num_classes ** 2)
    matrix = matrix.reshape(num_classes, num_classes)
    size = max(5.0, 0.5 * num_classes + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    # Log colours: the off-diagonal mistakes (a handful each) stay visible beside the ~1000s.
    image = axes.imshow(matrix.clamp(min=1), cmap="Blues", norm=matplotlib.colors.LogNorm())
    if num_classes <= 30:
        threshold = matrix.max().item() ** 0.5
        for true in range(num_classes):
            for predicted in range(num_classes):
                count = matrix[true, predicted].item()
                if count:
                    axes.text(predicted, true, str(count), ha="center", va="center", fontsize=8,
                              color="white" if count > threshold else "black")
        axes.set_xticks(range(num_classes), class_names, rotation=90 if num_classes > 10 else 0)
        axes.set_yticks(range(num_classes), class_names)
    accuracy = 100 * matrix.diagonal().sum().item() / max(1, matrix.sum().item())
    axes.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix (accuracy {accuracy:.2f}%)")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    _save(figure, path)


def plot_misclassified(images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
                       class_names: list[str], path: Path) -> None:
    """The first MAX_MISCLASSIFIED wrong test images in one grid, each captioned true -> predicted."""
    wrong = (predictions != labels).nonzero().flatten()[:MAX_MISCLASSIFIED]
    figure_width = 1.2 * GRID_COLUMNS
    if len(wrong) == 0:
        figure, axes = plt.subplots(figsize=(figure_width, 2))
        axes.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        axes.axis("off")
        _save(figure, path)
        return
    # Wide padding, blank (0 = paper once inverted below), leaves room for each caption.
    padding, side = max(8, images.shape[-1] // 3), images.shape[-1]
    grid = make_grid(images[wrong].unsqueeze(1), nrow=GRID_COLUMNS, padding=padding, pad_value=0)
    rows = -(-len(wrong) // GRID_COLUMNS)
    figure, axes = plt.subplots(figsize=(figure_width, 1.35 * rows + 0.6))
    axes.imshow(grid[0], cmap="gray_r", vmin=0, vmax=255)  # ink dark on white, as on paper
    cell = side + padding
    for slot, index in enumerate(wrong.tolist()):
        row, column = divmod(slot, GRID_COLUMNS)
        axes.add_patch(matplotlib.patches.Rectangle(
            (column * cell + padding - 1.5, row * cell + padding - 1.5), side + 2, side + 2,
            fill=False, edgecolor="0.75", linewidth=0.6))
        axes.text(column * cell + padding, row * cell + padding - 2,
                  f"{class_names[labels[index]]}→{class_names[predictions[index]]}",
                  fontsize=8, color="firebrick", va="bottom")
    axes.set_title(f"Misclassified test images (true→predicted), {len(wrong)} of "
                   f"{int((predictions != labels).sum())}", fontsize=9)
    axes.axis("off")
    _save(figure, path)
