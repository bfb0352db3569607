#!/usr/bin/env bash
# Handwritten digits: the shared LeNet-5 (no BatchNorm). The publisher records statistics on
# MNIST train; the user compresses with them and measures on MNIST test.
set -euo pipefail
cd "$(dirname "$0")"
DATA=${TINYDISTILL_DATA:-../../../shared/data}
BIN=${TINYDISTILL:-tinydistill}
$BIN stats "$DATA/teachers/mnist_lenet5.h5" --data "$DATA/mnist" --input-range 0,1 -o lenet5.stats.npz
$BIN compress "$DATA/teachers/mnist_lenet5.h5" --board cortex-m4 --stats lenet5.stats.npz --width 0.5 \
    --data "$DATA/mnist" -o out "$@"
