"""Train the MNIST CNN (or one on your own image lists) and save the checkpoint detect.py reads.

    python main.py                  # default preset: best accuracy in a few minutes on a CPU
    python main.py --quick          # ~99% in a few seconds
    python main.py --data-dir my_data --image-size 32 --epochs 20
    python main.py --resume checkpoints/mnist_cnn.pt     # continue a stopped run
    torchrun --standalone --nproc_per_node=2 main.py     # DDP: processes (CPU) or GPUs

Data: data/train.txt and data/test.txt (`<image path relative to data/> <label>`, written by
convert.py), or the MNIST IDX files in data/ when there are no lists. Outputs: the checkpoint
(--checkpoint) and a run folder (--run-dir) with metrics.csv, curves.png, confusion_matrix.png
and misclassified.png. The flags below override the chosen preset.
"""
from __future__ import annotations

import argparse

from convnet.cli import UserError, run_cli
from convnet.model import DEFAULT_CHECKPOINT

# The two presets. The default one aims for the best accuracy in a few minutes on a CPU; its
# shift-only augmentation and hidden layer were chosen on MNIST and Fashion-MNIST together
# (random rotation and scaling cost clothing half a point); it saves a moving average of the
# weights (--ema-horizon), which evens out the last steps' noise. Quick trades accuracy
# for speed: stride-2 convolutions instead of pooling, no augmentation, one epoch; label
# smoothing lifts its one epoch from about 98.95% to 99.2% at no cost. Both compute in bfloat16
# on CPUs that do it natively (float32 elsewhere). Measured by benchmarks/bench_train.py
# (figures in the README).
PRESETS = {
    "default": dict(epochs=16, batch_size=128, lr=4e-3, widths=(16, 32, 64), convs_per_stage=2,
                    kernel_size=3, hidden=256, strides=None, dropout=0.1, augment=True,
                    label_smoothing=0.1, ema_horizon=0.125, bf16=True),
    "quick": dict(epochs=1, batch_size=128, lr=1e-2, widths=(16, 32, 32), convs_per_stage=1,
                  kernel_size=5, hidden=128, strides=(2, 2, 1), dropout=0.0, augment=False,
                  label_smoothing=0.1, ema_horizon=0.0, bf16=True),
}


def int_list(text: str) -> tuple[int, ...]:
    """`32,64,128` -> (32, 64, 128), every number at least 1."""
    try:
        numbers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 32,64, got {text!r}")
    if min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"every number must be at least 1, got {text!r}")
    return numbers


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="use the quick preset: a fast strided network, one epoch, ~99%% on MNIST in seconds "
                             "(default: the accurate preset)")
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", default="data",
                      help="folder with train.txt/test.txt (or the MNIST IDX files) (default: data)")
    data.add_argument("--image-size", type=positive_int, default=None,
                      help="resize every image to N x N pixels (default: keep the images' own size, "
                           "which must then be the same for all)")
    data.add_argument("--val-size", type=int, default=0,
                      help="hold out N training images and report accuracy on them each epoch instead "
                           "of the test list (default: 0, log the test accuracy)")
    data.add_argument("--workers", type=int, default=0,
                      help="processes decoding images on the first run (default: 0, one per CPU core)")
    training = parser.add_argument_group("training (each default comes from the preset)")
    training.add_argument("--epochs", type=positive_int,
                          help="passes over the training set (default: 16, quick: 1)")
    training.add_argument("--batch-size", type=positive_int,
                          help="images per step, summed over all processes under torchrun (default: 128)")
    training.add_argument("--lr", type=float,
                          help="peak learning rate of the one-cycle schedule (default: 0.004, quick: 0.01)")
    training.add_argument("--weight-decay", type=float, default=5e-4, help="AdamW weight decay (default: 0.0005)")
    training.add_argument("--widths", type=int_list,
                          help="channels of each convolution stage, comma-separated (default: 16,32,64, "
                               "quick: 16,32,32)")
    training.add_argument("--strides", type=int_list,
                          help="downsample with this stride in each stage's first convolution instead of "
                               "2x2 max-pooling, one number per stage (default: pooling, quick: 2,2,1)")
    training.add_argument("--hidden", type=int,
                          help="units of a hidden layer before the classifier, 0 for none "
                               "(default: 256, quick: 128)")
    training.add_argument("--convs-per-stage", type=positive_int,
                          help="convolutions per stage (default: 2, quick: 1)")
    training.add_argument("--kernel-size", type=positive_int, help="convolution kernel side (default: 3, quick: 5)")
    training.add_argument("--dropout", type=float, help="dropout before the last layer (default: 0.1, quick: 0)")
    training.add_argument("--label-smoothing", type=float, help="cross-entropy label smoothing (default: 0.1)")
    training.add_argument("--ema-horizon", type=float, metavar="FRACTION",
                          help="save (and report the accuracy of) a moving average of the weights over about "
                               "the last FRACTION of the training steps instead of the last weights: it evens "
                               "out the last steps' noise; 0 for the last weights, 1 for the mean of all steps "
                               "(default: 0.125, about the last 2 of 16 epochs; quick: 0)")
    training.add_argument("--augment", action=argparse.BooleanOptionalAction,
                          help="randomly move, rotate and scale each training image, as set by the three "
                               "flags below (default: on, quick: off)")
    training.add_argument("--max-shift", type=float, default=2.0, metavar="PIXELS",
                          help="augmentation: shift by up to this many pixels each way (default: 2)")
    training.add_argument("--max-rotation", type=float, default=0.0, metavar="DEGREES",
                          help="augmentation: rotate by up to this many degrees each way, e.g. 10 "
                               "(default: 0, off)")
    training.add_argument("--max-scale", type=float, default=0.0, metavar="FRACTION",
                          help="augmentation: zoom in or out by up to this fraction, e.g. 0.1 "
                               "(default: 0, off)")
    training.add_argument("--bf16", action=argparse.BooleanOptionalAction,
                          help="on the CPU, train in bfloat16 where the processor supports it natively "
                               "(AVX512-BF16 or AMX; float32 elsewhere; evaluation is always float32); "
                               "CUDA always uses mixed precision (default: on)")
    training.add_argument("--seed", type=int, default=0,
                          help="seed of weights, shuffling and augmentation; the same seed gives the "
                               "same result on a CPU (default: 0)")
    running = parser.add_argument_group("running")
    running.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                         help="where to train; auto = CUDA when available, else MPS, else CPU (default: auto)")
    running.add_argument("--threads", type=int, default=0,
                         help="CPU threads per process (default: 0, the cores divided among processes)")
    running.add_argument("--checkpoint", default=None,
                         help=f"checkpoint file written after each epoch (default: {DEFAULT_CHECKPOINT}, "
                              f"or the --resume file)")
    running.add_argument("--run-dir", default="",
                         help="folder for metrics.csv and the plots (default: runs/<date-time>)")
    running.add_argument("--resume", metavar="CHECKPOINT",
                         help="continue the run saved in CHECKPOINT with the settings saved in it (data, "
                              "network, schedule, seed, run folder); only --device, --threads, "
                              "--workers and --checkpoint apply (default: start a new run)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    from convnet.train import Config, train  # imported after parsing: --help stays instant

    preset = PRESETS["quick" if args.quick else "default"]
    chosen = {name: getattr(args, name) for name in preset if getattr(args, name) is not None}
    settings = {**preset, **chosen}
    if settings["strides"] is not None and len(settings["strides"]) != len(settings["widths"]):
        raise UserError(f"--strides {','.join(map(str, settings['strides']))} and --widths "
                        f"{','.join(map(str, settings['widths']))}: give one stride per stage")
    if args.hidden is not None and args.hidden < 0:
        raise UserError(f"--hidden {args.hidden}: must be 0 or more")
    if min(args.max_shift, args.max_rotation, args.max_scale) < 0 or args.max_scale >= 1:
        raise UserError("--max-shift, --max-rotation and --max-scale must be 0 or more "
                        "(--max-scale below 1)")
    if not 0 <= settings["ema_horizon"] <= 1:
        raise UserError(f"--ema-horizon {settings['ema_horizon']}: must be a fraction from 0 to 1")
    if args.val_size < 0:
        raise UserError(f"--val-size {args.val_size}: must be 0 or more")
    config = Config(**settings, data_dir=args.data_dir, image_size=args.image_size,
                    val_size=args.val_size, workers=args.workers, weight_decay=args.weight_decay,
                    max_shift=args.max_shift, max_rotation=args.max_rotation, max_scale=args.max_scale,
                    seed=args.seed, device=args.device, threads=args.threads,
                    checkpoint=args.checkpoint or (args.resume or str(DEFAULT_CHECKPOINT)),
                    run_dir=args.run_dir)
    return train(config, resume=args.resume)


if __name__ == "__main__":
    run_cli(main)
