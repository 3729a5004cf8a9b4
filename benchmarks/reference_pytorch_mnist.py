"""The pytorch/examples `mnist/main.py` recipe, re-implemented faithfully, as the yardstick.

    python benchmarks/reference_pytorch_mnist.py --data-dir data --epochs 4

Same model (two 3x3 convolutions, max-pool, dropout 0.25, a 128-unit layer, dropout 0.5),
Adadelta at lr 1.0 with StepLR(gamma 0.7) per epoch, batch 64, test batch 1000, seed 1, and
a DataLoader over torchvision's MNIST with ToTensor + Normalize((0.1307,), (0.3081,)). As in
the original on a CPU, the training DataLoader does not shuffle (the original sets
shuffle=True only in its CUDA branch). The IDX files are decompressed into a torchvision-style
folder (benchmarks/out/torchvision/MNIST/raw/) so that nothing is downloaded.

`run()` is what benchmarks/bench_train.py calls: per epoch, the training seconds (the test
pass excluded) and the test accuracy.
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.lr_scheduler import StepLR
from torchvision import datasets, transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from convnet.idx import SPLIT_FILES, find_idx_file  # noqa: E402

TORCHVISION_ROOT = Path(__file__).resolve().parent / "out" / "torchvision"


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def train(model: nn.Module, loader, optimizer) -> None:
    model.train()
    for data, target in loader:
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()


def test(model: nn.Module, loader) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in loader:
            correct += model(data).argmax(dim=1).eq(target).sum().item()
    return correct / len(loader.dataset)


def torchvision_folder(data_dir: str | Path) -> Path:
    """Decompress data_dir's four IDX files where torchvision.datasets.MNIST looks for them."""
    raw = TORCHVISION_ROOT / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in (name for pair in SPLIT_FILES.values() for name in pair):
        source = find_idx_file(data_dir, name)
        if source is None:
            sys.exit(f"error: {data_dir} lacks {name}.gz")
        if not (raw / name).is_file():
            with (gzip.open(source) if source.suffix == ".gz" else open(source, "rb")) as src, \
                    open(raw / name, "wb") as out:
                shutil.copyfileobj(src, out)
    return TORCHVISION_ROOT


def run(data_dir: str | Path, epochs: int, stop_at: float | None = None) -> list[dict[str, float]]:
    """Train like pytorch/examples; one {epoch, train_seconds, test_accuracy} per epoch.
    Stops early once the test accuracy reaches stop_at (when given)."""
    torch.manual_seed(1)
    root = torchvision_folder(data_dir)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(root, train=True, download=False, transform=transform)
    test_set = datasets.MNIST(root, train=False, download=False, transform=transform)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=64)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000)
    model = Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    history = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        train(model, train_loader, optimizer)
        seconds = time.perf_counter() - started
        accuracy = test(model, test_loader)
        scheduler.step()
        history.append({"epoch": epoch, "train_seconds": seconds, "test_accuracy": accuracy})
        print(f"reference epoch {epoch}: {seconds:.1f} s, test accuracy {100 * accuracy:.2f}%", flush=True)
        if stop_at is not None and accuracy >= stop_at:
            break
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description="pytorch/examples mnist recipe, for comparison.")
    parser.add_argument("--data-dir", default="data", help="folder with the MNIST IDX files (default: data)")
    parser.add_argument("--epochs", type=int, default=14, help="epochs, as in the original (default: 14)")
    args = parser.parse_args()
    run(args.data_dir, args.epochs)


if __name__ == "__main__":
    main()
