"""Teacher statistics metadata (Lopes et al. 2017): what a model publisher ships next to the model.

Per class and per probed layer, the per-channel mean and standard deviation
of the teacher's activations on the publisher's training data, over samples
and spatial positions. The file is a plain ``.npz`` (no pickle) with a JSON
header carrying a format version and the teacher's fingerprint.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .. import __version__, _compat
from .._math import floor_spread, pooled_moments
from ..errors import StatsError, StatsMismatchError
from ..fileio import atomic_write, read_npz
from .graph import DENSE_LIKE, DEPTHWISE, PASS_THROUGH, UnsupportedGraph, layer_graph, output_shape

FORMAT = "tinydistill.stats"
VERSION = 1
LOGITS = "__logits__"
INPUT = "__input__"


MAX_GRID = 8
# Layer pairs (Lopes et al.'s spectral variant): the share of a pair's graph-Fourier basis kept,
# lowest frequencies first, and the least number of coefficients.
SPECTRAL_KEEP = 0.25
SPECTRAL_MIN = 2
_PAIR_BYTES = 1 << 30  # at most 1 GiB of per-class second moments per layer pair


def grid_size(extent: int) -> int:
    """Regions along one spatial axis: the largest divisor of ``extent`` that is <= MAX_GRID."""
    return max(d for d in range(1, min(extent, MAX_GRID) + 1) if extent % d == 0)


def _add_class_outer_products(acc: np.ndarray, onehot: np.ndarray, z: np.ndarray) -> None:
    """acc[c] += sum of outer products z_b z_b^T over the batch rows of class c, in place: one BLAS
    product per class over its own rows (an einsum over batch x classes x k x k took an hour for
    a 1200-wide dense pair)."""
    for c in range(onehot.shape[1]):
        rows = np.flatnonzero(onehot[:, c])
        if len(rows):
            zc = z[rows]
            acc[c] += (zc * onehot[rows, c, None]).T @ zc


def region_pool(a: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """Mean over each of gh x gw equal regions of a (B, H, W, C) array -> (B, gh, gw, C)."""
    b, h, w, c = a.shape
    return a.reshape(b, gh, h // gh, gw, w // gw, c).mean(axis=(2, 4))


@dataclass
class PairStats:
    """Spectral statistics of two recorded layers joined by one weight matrix (Lopes et al.'s layer pairs).

    The pair is a bipartite graph (the layers' channels as nodes, summed absolute weights as
    edges). A sample's signal is the concatenation of both layers' channel means, standardised;
    its coefficients on the lowest-frequency eigenvectors of the graph's normalised Laplacian are
    ``signal @ projection - offset``. Recorded: their per-class mean and std.
    """

    source: str
    target: str
    projection: np.ndarray  # (channels of source + target, k), standardisation folded in
    offset: np.ndarray  # (k,)
    mean: np.ndarray  # (classes, k)
    std: np.ndarray  # (classes, k)


@dataclass
class Stats:
    """Recorded activation statistics.

    Attributes:
        fingerprint: the teacher's weight fingerprint.
        input_range: the teacher's expected input range (lo, hi).
        num_classes: number of classes.
        layers: recorded layer names in order (``__input__`` first, ``__logits__`` last).
        mean, std: per layer, arrays of shape (classes, channels).
        region_mean, region_std: for spatial layers (and image inputs), per class and per
            region of a coarse grid (at most 8 x 8), shape (classes, gh, gw, channels): where
            in the map activity is, as Lopes et al.'s per-neuron statistics, at a fraction of the size.
        pairs: the layer-pair spectral statistics, a list of :class:`PairStats`.
        counts: examples seen per class.
        header: the JSON header as a dict.
    """

    fingerprint: str
    input_range: tuple
    num_classes: int
    layers: list
    mean: dict
    std: dict
    counts: np.ndarray
    header: dict = field(default_factory=dict)
    region_mean: dict = field(default_factory=dict)
    region_std: dict = field(default_factory=dict)
    pairs: list = field(default_factory=list)

    @property
    def class_names(self) -> list | None:
        """The classes' names in label order, if the publisher recorded them."""
        names = self.header.get("class_names")
        return [str(n) for n in names] if isinstance(names, list) and len(names) == self.num_classes else None

    def global_moments(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """All-class mean and std of a layer, from the per-class moments."""
        return pooled_moments(self.mean[layer], self.std[layer], self.counts)


def record_stats(teacher, data, y: np.ndarray | None = None, *, input_range, batch_size: int = 256,
                 class_names=None, on_progress=None) -> Stats:
    """Record per-class, per-layer activation statistics of ``teacher`` on labelled data, batch by batch.

    Args:
        teacher: a :class:`~tinydistill.teacher.Teacher`.
        data: inputs already in the teacher's input range (float32, with labels ``y``); or, without ``y``,
            a :class:`~tinydistill.data.sources.Source` read from disk (``open_data``: scaled here), a
            ``tf.data.Dataset`` or any iterable of ``(x, y)`` batches in the teacher's range. Data is read
            once, a batch at a time: memory does not grow with its size.
        y: integer labels, with array inputs.
        input_range: the teacher's expected input range, stored in the file.
        batch_size: examples per forward pass.
        class_names: the classes' names in label order, stored in the file (default: the source's, e.g. an
            image folder's class folders).
        on_progress: optional callable ``(done, total)`` (``total`` 0 where unknown).

    Example:
        >>> stats = td.record_stats(teacher, x_train, y_train, input_range=(0, 1))
        >>> td.save_stats(stats, "teacher.stats.npz")
    """
    from ..data.sources import Source, as_source, teacher_batches

    src = as_source((np.asarray(data), y) if y is not None else data)
    names_given = class_names if class_names is not None else src.class_names
    _check_class_names(names_given, teacher.num_classes)
    acc = _Accumulator(teacher)
    # a Source read from disk holds values as stored (scaled here); Python's arrays and batches are in range already
    batches = teacher_batches(src, teacher.input_shape, teacher.num_classes, input_range, batch_size,
                              already_scaled=not isinstance(data, Source))
    for xb, yb in batches:
        acc.add(xb, yb)
        if on_progress:
            on_progress(acc.n, src.count or 0)
    return acc.finish(input_range, names_given)


def _check_class_names(names, num_classes: int) -> None:
    if names is not None and (len(names) != num_classes or len(set(names)) != len(names)):
        raise StatsError(f"{len(names)} class names given ({', '.join(map(str, names[:6]))}...) for a teacher with "
                         f"{num_classes} classes: give one distinct name per class, in label order")


class _Accumulator:
    """Running per-class sums of every probed layer (channels, grid regions, layer pairs) over the batches seen."""

    def __init__(self, teacher):
        tf, k = _compat.tf(), _compat.keras()
        lm = teacher.logits_model
        probe = k.Model(lm.inputs, [lm.get_layer(n).output for n in teacher.probe_layers] + [lm.output])
        self.forward = tf.function(lambda xb: probe(xb, training=False), reduce_retracing=True)
        self.teacher, self.tf = teacher, tf
        self.names = [INPUT] + list(teacher.probe_layers) + [LOGITS]
        self.C = teacher.num_classes
        self.sums, self.sqs, self.pos, self.rsums, self.rsqs, self.grids = {}, {}, {}, {}, {}, {}
        self.counts = np.zeros(self.C, np.int64)
        # a pair's per-class second moments take C * (channels)^2 doubles: pairs too wide for that are left out
        self.pairs = [p for p in layer_pairs(teacher) if self.C * (sum(p[2].shape) ** 2) * 8 <= _PAIR_BYTES]
        self.pooled_sums, self.pooled_sqs = {}, {}  # per pair: per-class sums of the pooled signal, its outer products
        self.n, self.lo, self.hi = 0, np.inf, -np.inf

    def add(self, xb: np.ndarray, yb: np.ndarray) -> None:
        if len(xb) == 0:
            return
        self.n += len(xb)
        self.lo, self.hi = min(self.lo, float(xb.min())), max(self.hi, float(xb.max()))
        acts = [xb] + [a.numpy() for a in _as_list(self.forward(self.tf.constant(xb)))]
        onehot = np.eye(self.C, dtype=np.float64)[yb]  # (B, C)
        self.counts += onehot.sum(0).astype(np.int64)
        pooled = {}
        for name, a in zip(self.names, acts):
            a = np.asarray(a, np.float64)
            if a.ndim == 4 and (a.shape[1] > 1 or a.shape[2] > 1):
                gh, gw = grid_size(a.shape[1]), grid_size(a.shape[2])
                r1 = region_pool(a, gh, gw).reshape(len(xb), -1)
                r2 = region_pool(a ** 2, gh, gw).reshape(len(xb), -1)
                self.rsums[name] = self.rsums.get(name, 0) + onehot.T @ r1
                self.rsqs[name] = self.rsqs.get(name, 0) + onehot.T @ r2
                self.grids[name] = (gh, gw, a.shape[-1])
            a = a.reshape(len(xb), -1, a.shape[-1])  # (B, P, ch)
            s, q = a.sum(1), (a ** 2).sum(1)  # (B, ch)
            self.sums[name] = self.sums.get(name, 0) + onehot.T @ s
            self.sqs[name] = self.sqs.get(name, 0) + onehot.T @ q
            self.pos[name] = self.pos.get(name, 0) + onehot.sum(0) * a.shape[1]
            pooled[name] = s / a.shape[1]
        for i, (src, dst, _) in enumerate(self.pairs):
            z = np.concatenate([pooled[src], pooled[dst]], axis=1)
            self.pooled_sums[i] = self.pooled_sums.get(i, 0) + onehot.T @ z
            if i not in self.pooled_sqs:
                self.pooled_sqs[i] = np.zeros((self.C, z.shape[1], z.shape[1]))
            _add_class_outer_products(self.pooled_sqs[i], onehot, z)

    def finish(self, input_range, class_names) -> Stats:
        if self.n == 0:
            raise StatsError("no data to record statistics on: pass labelled examples")
        counts, C = self.counts, self.C
        missing = np.flatnonzero(counts == 0)
        if len(missing):
            raise StatsError(f"the data has no examples of classes {missing.tolist()}: statistics need every class")
        mean, std = {}, {}
        for name in self.names:
            p = self.pos[name][:, None]
            m = self.sums[name] / p
            mean[name] = m.astype(np.float32)
            std[name] = np.sqrt(np.maximum(self.sqs[name] / p - m ** 2, 0.0)).astype(np.float32)
        rmean, rstd = {}, {}
        for name, (gh, gw, ch) in self.grids.items():
            m = self.rsums[name] / counts[:, None]
            rmean[name] = m.reshape(C, gh, gw, ch).astype(np.float32)
            rstd[name] = np.sqrt(np.maximum(self.rsqs[name] / counts[:, None] - m ** 2, 0.0)).reshape(
                C, gh, gw, ch).astype(np.float32)
        pair_stats = [_spectral(src, dst, adj, self.pooled_sums[i], self.pooled_sqs[i], counts)
                      for i, (src, dst, adj) in enumerate(self.pairs)]
        t = self.teacher
        header = {
            "format": FORMAT, "version": VERSION, "tinydistill_version": __version__,
            "fingerprint": t.fingerprint, "teacher": os.path.basename(t.path),
            "input_shape": list(t.input_shape), "input_range": [float(v) for v in input_range],
            "observed_input_range": [self.lo, self.hi],
            "num_classes": C, "layers": self.names, "examples": int(self.n), "region_layers": list(self.grids),
            "pairs": [[p.source, p.target] for p in pair_stats],
        }
        if class_names is not None:
            header["class_names"] = [str(c) for c in class_names]
        return Stats(fingerprint=t.fingerprint, input_range=tuple(header["input_range"]), num_classes=C,
                     layers=self.names, mean=mean, std=std, counts=counts, header=header, region_mean=rmean,
                     region_std=rstd, pairs=pair_stats)


def layer_pairs(teacher) -> list[tuple[str, str, np.ndarray]]:
    """Recorded layers joined by one weighted layer: (source, target, |weights| summed to (C_src, C_dst)).

    Between the two only channel-preserving layers (activations, BatchNorm, pooling, dropout,
    depthwise convolutions) and a Flatten may lie; pairs across a merge (residual ``Add``) are
    left out, since no single weight matrix joins them.
    """
    lm = teacher.logits_model
    try:
        graph = layer_graph(lm)
    except UnsupportedGraph:
        return []
    nodes = {node.name: node for node in graph}
    recorded = {name: name for name in teacher.probe_layers}
    recorded[graph[-1].name] = LOGITS
    for node in graph:
        if node.kind == "InputLayer":
            recorded[node.name] = INPUT
    channelwise = PASS_THROUGH | DEPTHWISE | {"BatchNormalization"}
    pairs = []
    for name, label in recorded.items():
        if label == INPUT:
            continue
        cur = name
        while nodes[cur].kind not in DENSE_LIKE:  # back to the weighted layer that makes it
            if nodes[cur].kind not in channelwise or len(nodes[cur].inputs) != 1:
                cur = None
                break
            cur = nodes[cur].inputs[0]
        if cur is None:
            continue
        kernel = lm.get_layer(cur).get_weights()[0]
        adj = np.abs(kernel).reshape(-1, kernel.shape[-2], kernel.shape[-1]).sum(0)  # (in, out)
        src = nodes[cur].inputs[0] if nodes[cur].inputs else None
        while src is not None and src not in recorded:  # back to the recorded layer it reads
            node = nodes[src]
            if node.kind == "Flatten":
                channels = output_shape(lm, node.inputs[0])[-1]
                adj = adj.reshape(-1, channels, adj.shape[-1]).sum(0)
            elif node.kind not in channelwise or len(node.inputs) != 1:
                src = None
                break
            src = node.inputs[0]
        if src is not None and adj.shape[0] == output_shape(lm, src)[-1]:
            pairs.append((recorded[src], label, adj))
    return pairs


def _spectral(source, target, adj, sums, sqs, counts) -> PairStats:
    """Spectral coefficients' per-class moments from the pooled signal's per-class first and second moments."""
    n_src, n_dst = adj.shape
    n = n_src + n_dst
    w = adj / max(float(adj.max()), 1e-12)
    a = np.zeros((n, n))
    a[:n_src, n_src:] = w
    a[n_src:, :n_src] = w.T
    deg = np.maximum(a.sum(1), 1e-12)
    lap = np.eye(n) - a / np.sqrt(deg[:, None] * deg[None, :])
    _, vecs = np.linalg.eigh(lap)  # ascending: lowest graph frequencies first
    k = min(n, max(SPECTRAL_MIN, int(np.ceil(SPECTRAL_KEEP * n))))
    basis = vecs[:, :k]
    basis = basis * np.where(basis.sum(0) < 0, -1.0, 1.0)  # a fixed sign per eigenvector
    cnt = counts[:, None].astype(np.float64)
    mean_c = sums / cnt  # (C, n)
    cov_c = sqs / cnt[:, :, None] - mean_c[:, :, None] * mean_c[:, None, :]
    frac = (counts / counts.sum())[:, None]
    g_mean = (frac * mean_c).sum(0)
    g_var = (frac * (np.diagonal(cov_c, axis1=1, axis2=2) + mean_c ** 2)).sum(0) - g_mean ** 2
    g_std = np.sqrt(np.maximum(g_var, 0.0))
    g_std = floor_spread(g_std, least=1e-12, tiny=1e-12)
    proj = basis / g_std[:, None]
    offset = (g_mean / g_std) @ basis
    mean = mean_c @ proj - offset
    var = np.einsum("ik,cij,jk->ck", proj, cov_c, proj, optimize=True)
    return PairStats(source=source, target=target, projection=proj.astype(np.float32), offset=offset.astype(np.float32),
                     mean=mean.astype(np.float32), std=np.sqrt(np.maximum(var, 0.0)).astype(np.float32))


def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def stats_to_bytes(stats: Stats) -> bytes:
    """Serialise to ``.npz`` bytes (plain arrays, JSON header; no pickle)."""
    arrays = {"header": np.array(json.dumps(stats.header)), "counts": stats.counts}
    for i, name in enumerate(stats.layers):
        arrays[f"mean_{i}"] = stats.mean[name]
        arrays[f"std_{i}"] = stats.std[name]
        if name in stats.region_mean:
            arrays[f"rmean_{i}"] = stats.region_mean[name]
            arrays[f"rstd_{i}"] = stats.region_std[name]
    for i, p in enumerate(stats.pairs):
        for key in ("projection", "offset", "mean", "std"):
            arrays[f"pair{i}_{key}"] = getattr(p, key)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def save_stats(stats: Stats, path: str) -> None:
    """Write a stats file atomically (temp file in the same folder, then rename)."""
    atomic_write(path, stats_to_bytes(stats))


def load_stats(path: str, teacher=None) -> Stats:
    """Load a stats file; refuse it if it was recorded on another teacher.

    Raises:
        StatsError: unreadable, pickled, or from a newer format version.
        StatsMismatchError: the fingerprint differs from ``teacher``'s.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise StatsError(f"stats file {path} does not exist: record one with 'tinydistill stats'")
    fix = "record the stats again with 'tinydistill stats'"
    arrays = read_npz(path, StatsError, fix)
    if "header" not in arrays:
        raise StatsError(f"{path} is not a tinydistill stats file (no header): {fix}")
    try:
        header = json.loads(str(arrays.pop("header")[()]))
    except ValueError as exc:
        raise StatsError(f"{path} is not a valid stats file ({exc}): {fix}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StatsError(f"{path} is not a tinydistill stats file: record one with 'tinydistill stats'")
    _check_header(header, path, fix)
    version = int(header.get("version", 0))
    if version > VERSION:
        raise StatsError(f"{path} uses stats format {version}, newer than this tinydistill reads ({VERSION}): "
                         "upgrade tinydistill")
    if teacher is not None and header.get("fingerprint") != teacher.fingerprint:
        raise StatsMismatchError(
            f"{path} was recorded on another model ({header.get('teacher', '?')}, fingerprint "
            f"{str(header.get('fingerprint'))[:12]}) than {os.path.basename(teacher.path)} "
            f"({teacher.fingerprint[:12]}): record stats for this teacher with 'tinydistill stats'")
    recorded = header.get("input_shape")
    if teacher is not None and isinstance(recorded, list) and tuple(recorded) != tuple(teacher.input_shape):
        # the same weights at another input size (a model of unknown input size, rebuilt with --input-shape)
        shown = ",".join(str(d) for d in recorded)
        raise StatsMismatchError(
            f"{path} was recorded at input shape ({shown}), not the teacher's {tuple(teacher.input_shape)}: pass "
            f"--input-shape {shown} as when it was recorded, or record stats at this size")
    try:
        names = header["layers"]
        mean = {n: arrays[f"mean_{i}"] for i, n in enumerate(names)}
        std = {n: arrays[f"std_{i}"] for i, n in enumerate(names)}
        counts = arrays["counts"]
        rmean = {n: arrays[f"rmean_{i}"] for i, n in enumerate(names) if f"rmean_{i}" in arrays}
        rstd = {n: arrays[f"rstd_{i}"] for i, n in enumerate(names) if f"rmean_{i}" in arrays}
        pairs = [PairStats(src, dst, *(arrays[f"pair{i}_{key}"] for key in ("projection", "offset", "mean", "std")))
                 for i, (src, dst) in enumerate(header.get("pairs", []))]
    except (KeyError, TypeError, ValueError) as exc:
        raise StatsError(f"{path} is incomplete or damaged ({exc}): record it again") from None
    stats = Stats(fingerprint=header["fingerprint"], input_range=tuple(float(v) for v in header["input_range"]),
                  num_classes=int(header["num_classes"]), layers=names, mean=mean, std=std,
                  counts=counts, header=header, region_mean=rmean, region_std=rstd, pairs=pairs)
    _check_arrays(stats, path, teacher)
    return stats


def _check_header(header: dict, path: str, fix: str) -> None:
    """The header fields the loader and synthesis read, with the types they need."""
    rng = header.get("input_range")
    ok = (isinstance(header.get("layers"), list) and all(isinstance(n, str) for n in header["layers"])
          and isinstance(header.get("num_classes"), int) and header["num_classes"] >= 2
          and isinstance(header.get("fingerprint"), str) and isinstance(header.get("version", 0), int)
          and isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)
          and np.isfinite(rng).all() and rng[0] < rng[1]
          and isinstance(header.get("pairs", []), list)
          and all(isinstance(p, list) and len(p) == 2 for p in header.get("pairs", [])))
    if not ok:
        raise StatsError(f"{path} has a damaged header (layers, classes, input range or fingerprint): {fix}")


def _check_arrays(stats: Stats, path: str, teacher) -> None:
    """Every array with the shape, type and values synthesis relies on (and, given the teacher, its channels)."""
    C = stats.num_classes

    def fail(what):
        raise StatsError(f"{path} is damaged ({what}): record it again with 'tinydistill stats'")

    def real(a, ndim):
        return isinstance(a, np.ndarray) and a.ndim == ndim and a.dtype.kind == "f" and np.isfinite(a).all()

    if not (stats.counts.ndim == 1 and len(stats.counts) == C and stats.counts.dtype.kind in "iu"
            and (stats.counts > 0).all()):
        fail("counts must hold one positive count per class")
    channels = _teacher_channels(teacher) if teacher is not None else {}
    for n in stats.layers:
        m, sd = stats.mean[n], stats.std[n]
        if not (real(m, 2) and real(sd, 2) and m.shape == sd.shape and m.shape[0] == C and (sd >= 0).all()):
            fail(f"moments of layer {n}")
        if n in channels and m.shape[1] != channels[n]:
            fail(f"layer {n} has {m.shape[1]} channels in the file, {channels[n]} in the teacher")
        if n in stats.region_mean:
            rm, rs = stats.region_mean[n], stats.region_std[n]
            if not (real(rm, 4) and real(rs, 4) and rm.shape == rs.shape and rm.shape[0] == C and rm.shape[3] == m.shape[1]):
                fail(f"region moments of layer {n}")
    for p in stats.pairs:
        if not (real(p.projection, 2) and real(p.offset, 1) and real(p.mean, 2) and real(p.std, 2)
                and p.projection.shape[1] == len(p.offset) == p.mean.shape[1] and p.mean.shape == p.std.shape
                and p.mean.shape[0] == C and p.source in stats.mean and p.target in stats.mean
                and p.projection.shape[0] == stats.mean[p.source].shape[1] + stats.mean[p.target].shape[1]):
            fail(f"layer-pair statistics {p.source} -> {p.target}")


def _teacher_channels(teacher) -> dict:
    """Channels of every layer a stats file may record for this teacher."""
    lm = teacher.logits_model
    out = {INPUT: int(teacher.input_shape[-1]), LOGITS: int(teacher.num_classes)}
    for n in teacher.probe_layers:
        out[n] = int(lm.get_layer(n).output.shape[-1])
    return out
