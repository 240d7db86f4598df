"""Planar geometry of road users' boxes, shared by the importers and the mutations."""

from __future__ import annotations

import numpy as np


def boxes_overlap(
    x1: np.ndarray, y1: np.ndarray, yaw1: np.ndarray, l1: np.ndarray, w1: np.ndarray,
    x2: np.ndarray, y2: np.ndarray, yaw2: np.ndarray, l2: np.ndarray, w2: np.ndarray,
) -> np.ndarray:
    """Whether oriented boxes (centre [m], yaw [rad], length, width [m]) overlap; broadcasts (SAT)."""
    arrays = np.broadcast_arrays(*(np.asarray(a, float) for a in (x1, y1, yaw1, l1, w1, x2, y2, yaw2, l2, w2)))
    out = np.zeros(arrays[0].shape, bool)
    x1, y1, yaw1, l1, w1, x2, y2, yaw2, l2, w2 = arrays
    dx, dy = x2 - x1, y2 - y1
    # only boxes whose circumscribed circles meet can overlap
    near = dx * dx + dy * dy <= 0.25 * (np.hypot(l1, w1) + np.hypot(l2, w2)) ** 2
    if not near.any():
        return out
    x1, y1, yaw1, l1, w1, x2, y2, yaw2, l2, w2, dx, dy = (a[near] for a in (x1, y1, yaw1, l1, w1, x2, y2, yaw2, l2, w2, dx, dy))
    c1, s1, c2, s2 = np.cos(yaw1), np.sin(yaw1), np.cos(yaw2), np.sin(yaw2)
    separated = np.zeros(dx.shape, bool)
    for ax, ay in ((c1, s1), (-s1, c1), (c2, s2), (-s2, c2)):
        r = np.abs(dx * ax + dy * ay)
        r1 = 0.5 * l1 * np.abs(c1 * ax + s1 * ay) + 0.5 * w1 * np.abs(-s1 * ax + c1 * ay)
        r2 = 0.5 * l2 * np.abs(c2 * ax + s2 * ay) + 0.5 * w2 * np.abs(-s2 * ax + c2 * ay)
        separated |= r > r1 + r2
    out[near] = ~separated
    return out
