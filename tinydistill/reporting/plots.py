"""Pictures for people: synthetic samples per class, and accuracy / size against the board."""

from __future__ import annotations

import io

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _as_image(x: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, str | None]:
    """One input as something imshow can draw: (H, W) grey or (H, W, 3) colour, in [0, 1]."""
    x = (np.asarray(x, np.float32) - lo) / (hi - lo)
    x = np.clip(x, 0, 1)
    if x.ndim == 3 and x.shape[-1] == 3:
        return x, None
    x = np.squeeze(x)
    if x.ndim == 1:
        x = x[None, :]
    elif x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    return x, "gray"


def samples_png(syn, *, input_range, class_names=None, per_class: int = 8, max_classes: int = 20) -> bytes:
    """A grid of synthetic inputs, one row per class (named where the names are known): what the teacher "dreamt"."""
    plt = _pyplot()
    lo, hi = input_range
    classes = [c for c in np.unique(syn.y)][:max_classes]
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.9, len(classes) * 0.9 + 0.4),
                             squeeze=False)
    for r, c in enumerate(classes):
        idx = np.flatnonzero(syn.y == c)[:per_class]
        for j in range(per_class):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(idx):
                img, cmap = _as_image(syn.x[idx[j]], lo, hi)
                ax.imshow(img, cmap=cmap, vmin=0, vmax=1, aspect="auto" if img.shape[0] != img.shape[1] else "equal")
            else:
                ax.axis("off")
            if j == 0:
                label = f"{class_names[c]} ({c})" if class_names is not None and c < len(class_names) else str(c)
                ax.set_ylabel(label, rotation=0, labelpad=10, va="center", ha="right")
    fig.suptitle(f"synthetic inputs per class ({syn.method})", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def report_png(report: dict) -> bytes:
    """Accuracy of teacher / float student / int8 student, and flash and arena against the budget."""
    plt = _pyplot()
    acc = report.get("accuracy") or {}
    s, b = report["student"], report["board"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 2.6))
    names = ["teacher float", "student float", "student int8"]
    vals = [acc.get("teacher_float"), acc.get("student_float"), acc.get("student_int8")]
    if any(v is not None for v in vals):
        bars = a1.barh(names, [100 * (v or 0) for v in vals], color=["#888888", "#6699cc", "#2266aa"])
        for bar, v in zip(bars, vals):
            a1.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {100 * v:.1f} %" if v is not None else " n/a",
                    va="center", fontsize=8)
        lo = max(0.0, min(100 * v for v in vals if v is not None) - 10)
        a1.set_xlim(lo, 104)
    else:
        a1.text(0.5, 0.5, "no test data (--data)", ha="center", va="center", transform=a1.transAxes)
    a1.set_title("accuracy on test data (%)", fontsize=9)
    a1.invert_yaxis()
    used = [s["model_bytes"], s["arena_bytes"]]
    budget = [b["flash_budget_bytes"], b["ram_budget_bytes"]]
    frac = [100 * u / bb for u, bb in zip(used, budget)]
    colors = ["#2266aa" if f <= 100 else "#cc3333" for f in frac]
    bars = a2.barh(["flash (model)", "RAM (arena)"], frac, color=colors)
    for bar, u, f in zip(bars, used, frac):
        a2.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {u / 1024:,.1f} KiB ({f:.0f} %)", va="center",
                fontsize=8)
    a2.axvline(100, color="black", lw=1, ls="--")
    a2.set_xlim(0, max(120, max(frac) * 1.3))
    a2.set_title(f"use of {b['name']} budget (%, {int(b['headroom'] * 100)} % headroom kept)", fontsize=9)
    a2.invert_yaxis()
    fig.tight_layout()
    return _png(fig)


def _png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
