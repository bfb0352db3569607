#!/usr/bin/env bash
# Wake-word spectrograms: the MLPerf Tiny streaming DS-CNN (BatchNorm, 3 classes, input 30x1x40
# in [0, 1]), no stats file; accuracy on the 45 samples that ship with it.
set -euo pipefail
cd "$(dirname "$0")"
DATA=${TINYDISTILL_DATA:-../../../shared/data}
BIN=${TINYDISTILL:-tinydistill}
$BIN inspect "$DATA/teachers/wakeword_dscnn.h5" --input-range 0,1
$BIN compress "$DATA/teachers/wakeword_dscnn.h5" --board cortex-m4 --input-range 0,1 --width 0.5 \
    --data "$DATA/teachers/wakeword_dscnn_samples.npz" -o out "$@"
