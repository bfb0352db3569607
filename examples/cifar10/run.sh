#!/usr/bin/env bash
# CIFAR-10 images: the MLPerf Tiny ResNet-8 (BatchNorm, raw 0-255 input), no stats file:
# synthesis uses the BatchNorm running statistics inside the teacher.
set -euo pipefail
cd "$(dirname "$0")"
DATA=${TINYDISTILL_DATA:-../../../shared/data}
BIN=${TINYDISTILL:-tinydistill}
$BIN inspect "$DATA/teachers/cifar10_resnet8.h5" --input-range 0,255 --board stm32l4r5
$BIN compress "$DATA/teachers/cifar10_resnet8.h5" --board stm32l4r5 --input-range 0,255 --width 0.5 \
    --data "$DATA/cifar10/test_q75.npz" -o out "$@"
