"""Interrupt and resume: completed stages of a compress run, kept beside the output folder.

The state folder ``.<output>.tinydistill-state`` holds the synthetic set once
synthesis is complete and the student (weights and optimiser state) after
every distillation epoch, each written atomically, with the options that
produced them. ``compress --resume`` reuses what matches and refuses, naming
the option, what does not. The folder is removed when the results are written.
"""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np

from .errors import TinyDistillError
from .fileio import atomic_write
from .synthesis import SyntheticSet


def state_folder(output: str) -> str:
    out = os.path.abspath(output)
    return os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.tinydistill-state")


class RunState:
    """Checkpoints of one compress run. ``synthesis_key`` / ``student_key``: what each stage depends on."""

    def __init__(self, folder: str, *, resume: bool):
        self.folder = folder
        self.resume = resume
        self.notes = []
        if not resume and os.path.isdir(folder):  # a fresh run starts over
            shutil.rmtree(folder)

    def _path(self, name):
        return os.path.join(self.folder, name)

    def _save(self, name: str, data: bytes) -> None:
        os.makedirs(self.folder, exist_ok=True)  # created on the first checkpoint only
        atomic_write(self._path(name), data)

    def _key_matches(self, name: str, key: dict) -> bool:
        """True if a stage saved under ``name`` was made with ``key``; raise if it was made otherwise."""
        path = self._path(name + ".json")
        if not self.resume or not os.path.exists(path):
            return False
        with open(path) as f:
            old = json.load(f)
        diff = [k for k in sorted(set(old) | set(key)) if old.get(k) != key.get(k)]
        if diff:
            what = ", ".join(f"{k} (was {old.get(k)!r}, now {key.get(k)!r})" for k in diff)
            raise TinyDistillError(f"cannot resume the {name} stage: {what} changed since the interrupted run; "
                                   "run again without --resume to start over")
        return True

    # ---- synthetic set
    def load_synthetic(self, key: dict) -> SyntheticSet | None:
        if not self._key_matches("synthesis", key) or not os.path.exists(self._path("synthetic.npz")):
            return None
        with np.load(self._path("synthetic.npz"), allow_pickle=False) as z:
            agreement = float(z["flip_agreement"]) if "flip_agreement" in z.files else float("nan")
            student = float(z["student_agreement"]) if "student_agreement" in z.files else float("nan")
            syn = SyntheticSet(x=z["x"], y=z["y"], logits=z["logits"], method=str(z["method"]),
                               flipped=bool(z["flipped"]) if "flipped" in z.files else False,
                               flip_agreement=None if np.isnan(agreement) else agreement,
                               generated=int(z["generated"]) if "generated" in z.files and int(z["generated"]) >= 0 else None,
                               mirrored=bool(z["mirrored"]) if "mirrored" in z.files else False,
                               generators=int(z["generators"]) if "generators" in z.files and int(z["generators"]) >= 0
                               else None,
                               notes=[str(n) for n in z["notes"]] if "notes" in z.files else [],
                               student_agreement=None if np.isnan(student) else student,
                               held=(z["held_x"], z["held_logits"]) if {"held_x", "held_logits"} <= set(z.files) else None)
        self.notes.append(f"resumed: {len(syn):,} synthetic inputs reused")
        return syn

    def save_synthetic(self, key: dict, syn: SyntheticSet) -> None:
        buf = io.BytesIO()
        np.savez(buf, x=syn.x, y=syn.y, logits=syn.logits, method=np.array(syn.method), flipped=np.array(syn.flipped),
                 flip_agreement=np.array(np.nan if syn.flip_agreement is None else syn.flip_agreement),
                 generated=np.array(-1 if syn.generated is None else syn.generated), mirrored=np.array(syn.mirrored),
                 generators=np.array(-1 if syn.generators is None else syn.generators),
                 notes=np.array(list(syn.notes), dtype=str),
                 student_agreement=np.array(np.nan if syn.student_agreement is None else syn.student_agreement),
                 **({} if syn.held is None else {"held_x": syn.held[0], "held_logits": syn.held[1]}))
        self._save("synthetic.npz", buf.getvalue())
        self._save("synthesis.json", json.dumps(key).encode())

    # ---- student checkpoints
    def load_student(self, key: dict):
        """(epochs done, student weights, optimiser state) or None."""
        if not self._key_matches("distillation", key) or not os.path.exists(self._path("student.npz")):
            return None
        with np.load(self._path("student.npz"), allow_pickle=False) as z:
            epoch = int(z["epoch"])
            weights = [z[f"w{i}"] for i in range(int(z["n_weights"]))]
            opt = [z[f"o{i}"] for i in range(int(z["n_opt"]))]
        self.notes.append(f"resumed: distillation continues after epoch {epoch}")
        return epoch, weights, opt

    def save_student(self, key: dict, epoch: int, weights: list, opt_state: list) -> None:
        buf = io.BytesIO()
        arrays = {f"w{i}": w for i, w in enumerate(weights)}
        arrays.update({f"o{i}": o for i, o in enumerate(opt_state)})
        np.savez(buf, epoch=epoch, n_weights=len(weights), n_opt=len(opt_state), **arrays)
        self._save("student.npz", buf.getvalue())
        self._save("distillation.json", json.dumps(key).encode())

    def finish(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
