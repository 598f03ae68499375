"""Comparing two sets of pieces feature by feature: the intra/inter-set method of Yang & Lerch (2020).

For each feature, the distances between pieces within the reference set (intra-set) and between a
generated piece and a reference piece (inter-set) are two distributions, smoothed with a Gaussian kernel
density estimate (Scott's bandwidth, as scipy's gaussian_kde). Their overlapping area (1 = the generated
pieces sit among the references as the references sit among themselves) and the KL divergence
KL(intra || inter) in nats say how close the sets are. Pairs of identical pieces are left out of the
inter-set distances, so a set compared with itself overlaps exactly (1) with KL 0.
"""

from __future__ import annotations

import math

import numpy as np

GRID = 1000


def _values(features: list[dict], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(pieces, dims) of one feature and the pieces' ids; pieces where it is undefined (NaN) are left out."""
    rows = np.array([np.atleast_1d(np.asarray(f[name], dtype=float)) for f in features]).reshape(len(features), -1)
    ids = np.array([f["id"] for f in features])
    keep = ~np.isnan(rows).any(1)
    return rows[keep], ids[keep]


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances between rows."""
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def _kde(samples: np.ndarray, grid: np.ndarray, scale: float) -> np.ndarray:
    bandwidth = max(samples.std(ddof=1) if len(samples) > 1 else 0.0, 1e-3 * scale) * len(samples) ** -0.2
    z = (grid[:, None] - samples[None, :]) / bandwidth
    density = np.exp(-0.5 * z**2).sum(1) / (len(samples) * bandwidth * math.sqrt(2 * math.pi))
    return density


def overlap_and_kl(p_samples: np.ndarray, q_samples: np.ndarray) -> tuple[float, float]:
    """(overlapping area, KL(p || q) in nats) of the kernel density estimates of two samples."""
    if len(p_samples) < 2 or len(q_samples) < 2:
        return math.nan, math.nan
    both = np.concatenate([p_samples, q_samples])
    scale = max(float(both.max() - both.min()), 1e-6)
    grid = np.linspace(both.min() - 0.25 * scale, both.max() + 0.25 * scale, GRID)
    step = grid[1] - grid[0]
    # normalised on the grid, so that equal samples overlap exactly
    p, q = (d / (d.sum() * step) for d in (_kde(p_samples, grid, scale), _kde(q_samples, grid, scale)))
    overlap = float(np.minimum(p, q).sum() * step)
    tiny = 1e-12
    kl = float((p * np.log((p + tiny) / (q + tiny))).sum() * step)
    return min(overlap, 1.0), max(kl, 0.0)


def compare_sets(generated: list[dict], reference: list[dict], names: tuple[str, ...]) -> dict[str, dict]:
    """Per feature: mean and standard deviation in each set (the mean vector for histograms), and the
    overlapping area and KL divergence of Yang & Lerch. Each feature dict carries the piece's "id"."""
    out: dict[str, dict] = {}
    for name in names:
        (gen, gen_ids), (ref, ref_ids) = _values(generated, name), _values(reference, name)
        row: dict[str, float | list[float]] = {}
        for label, values in (("generated", gen), ("reference", ref)):
            if values.shape[1] == 1:
                row[f"{label}_mean"] = float(values.mean()) if len(values) else math.nan
                row[f"{label}_std"] = float(values.std()) if len(values) else math.nan
            else:
                row[f"{label}_mean"] = values.mean(0).tolist() if len(values) else []
        intra = _distances(ref, ref)[~np.eye(len(ref), dtype=bool)]
        inter = _distances(gen, ref)[gen_ids[:, None] != ref_ids[None, :]]  # a piece is not compared with itself
        row["overlap"], row["kl"] = overlap_and_kl(intra, inter)
        out[name] = row
    return out
