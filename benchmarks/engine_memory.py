"""Where the engine's time and host memory go on an input larger than CIFAR-10's.

    python benchmarks/engine_memory.py [--effort 0.05] [--teacher FILE] [--input-range 0,1] [--board B] [--width W]

Without ``--teacher`` it builds an MLPerf Tiny visual-wake-words-shaped teacher: Keras' MobileNet (alpha 0.25) at
96 x 96 x 3, 2 classes, random weights with BatchNorm statistics from one pass over noise. Its accuracy means nothing;
its shapes set the time and memory. Then one ``compress`` (method ``generator``, width 0.5, cortex-m4) with each of
the engine's parts wrapped: resident memory before and after, and the high-water mark within (``/proc/self/status``
VmHWM, reset before each part through ``/proc/self/clear_refs``), and seconds. Linux only.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tinydistill.pipeline import compress  # noqa: E402
from tinydistill.student import distillation as D  # noqa: E402
from tinydistill.synthesis import engine as E  # noqa: E402
from tinydistill.units import peak_memory_bytes  # noqa: E402


def resident() -> int:
    """The process's resident memory now (VmRSS), in bytes; its high-water mark is :func:`peak_memory_bytes`."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


ROWS = []


def timed_call(fn, label, args, kwargs):
    """``fn(*args, **kwargs)`` as one row."""
    reset_peak()
    before, start = resident(), time.perf_counter()
    result = fn(*args, **kwargs)
    ROWS.append((label, before, resident(), peak_memory_bytes(), time.perf_counter() - start))
    return result


def measured(fn, label, calls=None):
    """``fn`` wrapped to record memory and seconds (``calls``: only those call numbers, each row numbered)."""
    count = [0]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        count[0] += 1
        if calls is not None and count[0] not in calls:
            return fn(*args, **kwargs)
        return timed_call(fn, label + (f" #{count[0]}" if calls else ""), args, kwargs)

    return wrapper


def timed(owner, name, label=None, calls=None):
    """Wrap ``owner.name`` in place (:func:`measured`)."""
    setattr(owner, name, measured(getattr(owner, name), label or name, calls))


def vww_teacher(path: str) -> None:
    import keras  # Keras 3: the teacher is saved as a user of TensorFlow 2.16+ would save it
    import numpy as np

    m = keras.applications.MobileNet(input_shape=(96, 96, 3), alpha=0.25, weights=None, classes=2)
    x = np.random.default_rng(0).uniform(0, 1, (64, 96, 96, 3)).astype("float32")
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(x, np.arange(64) % 2, epochs=1, verbose=0)
    m.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--input-range", default="0,1")
    ap.add_argument("--effort", type=float, default=0.05)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--board", default="cortex-m4")
    args = ap.parse_args()
    teacher = args.teacher
    if teacher is None:
        teacher = os.path.join(tempfile.mkdtemp(prefix="engine-memory-"), "vww_mobilenet.h5")
        vww_teacher(teacher)
    for name in ("recalibrate_batchnorm", "recalibration_noise"):
        timed(D, name)
    build = D.train_step_for

    @functools.wraps(build)
    def train_step_for(*args, **kwargs):  # the build, then the student's first two steps, each a row
        return measured(timed_call(build, "train_step_for", args, kwargs), "student step", calls={1, 2})

    D.train_step_for = train_step_for
    timed(E, "_result")
    timed(E._Engine, "warm_up")
    timed(E._Engine, "batch", "generator batch", calls={1, 2, 20})
    start = time.perf_counter()
    result = compress(teacher, board=args.board, width=args.width, input_range=args.input_range, effort=args.effort,
                      seed=0, method="generator")
    report = result.report
    print("| part | RSS before | RSS after | peak within | seconds |\n| --- | ---: | ---: | ---: | ---: |")
    for label, before, after, peak, secs in ROWS:
        print(f"| {label} | {before / 2**30:.2f} GiB | {after / 2**30:.2f} GiB | {peak / 2**30:.2f} GiB | {secs:.1f} |")
    syn = report["synthesis"]
    print(f"\ncompress {time.perf_counter() - start:.0f} s; stages {report.get('seconds')}; "
          f"peak {report['host_memory']['peak_rss_bytes'] / 2**30:.2f} GiB; inputs {syn.get('inputs')}; "
          f"adapted: {syn.get('adapted')}")


if __name__ == "__main__":
    main()
