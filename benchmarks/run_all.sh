#!/usr/bin/env bash
# Every figure in the README's Results section, in one go (about 30 minutes on a 2-core CPU: its
# steps, run one at a time, added up to 27).
#
#   bash benchmarks/run_all.sh ../shared/data            # folder holding mnist/ and fashion-mnist/
#
# Each step's output is kept in benchmarks/out/<step>.log. Run nothing else meanwhile: the
# figures are timings on a shared machine, and the steps are meant to be compared side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir="${1:-data}"
out=benchmarks/out
mkdir -p "$out"
step() { local name=$1; shift; echo "== $name: $*"; "$@" 2>&1 | tee "$out/$name.log"; }

step convert python benchmarks/bench_convert.py --source "$source_dir/mnist" --runs 5
step convert-fashion python benchmarks/bench_convert.py --source "$source_dir/fashion-mnist" \
    --dataset fashion-mnist --runs 1
step step python benchmarks/bench_step.py --widths 24,48,96 32,64,128
step train python benchmarks/bench_train.py --data-dir "$out/convert/mnist" \
    --fashion-dir "$out/convert/fashion-mnist"
step handwriting-set python benchmarks/make_handwriting_set.py --mnist-dir "$out/convert/mnist"
step handwriting python benchmarks/eval_handwriting.py --checkpoint "$out/train/default-seed0.pt"
step detect python benchmarks/bench_detect.py --data-dir "$out/convert/mnist" \
    --checkpoint "$out/train/default-seed0.pt" --photos "$out/handwriting"
