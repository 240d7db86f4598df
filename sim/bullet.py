"""pybullet plumbing shared by the world and the sensors: quiet import and connect, collision groups.

pybullet's C code prints to the process's stdout and stderr when it is imported and when a DIRECT client
connects; ``import_pybullet`` and ``connect`` swallow those lines so that importing ``sim`` and
creating envs stays quiet.

Collision groups (bit masks) decide which pairs the engine tests. Every mask includes
``GROUP_RAY`` because ``rayTestBatch`` casts rays as group 1: a body whose mask lacks it is
invisible to rays.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

#: The group ``rayTestBatch`` rays belong to (Bullet's default filter group).
GROUP_RAY = 1
#: Road surface and the ground beyond it.
GROUP_ROAD = 1 << 4
#: Other road users (kinematic boxes).
GROUP_AGENT = 1 << 5
#: The ego's body and links.
GROUP_EGO = 1 << 6
#: Visual-only decorations (lines, crosswalks): collide with nothing.
GROUP_NONE = 1 << 7
#: Road-edge walls: seen by the lidar's rays only (no body collides with them, the ground rays skip them).
GROUP_WALL = 1 << 8

MASK_ROAD = GROUP_RAY | GROUP_EGO
MASK_AGENT = GROUP_RAY | GROUP_EGO
MASK_EGO = GROUP_RAY | GROUP_AGENT | GROUP_ROAD
MASK_NONE = 0
MASK_WALL = GROUP_RAY


@contextlib.contextmanager
def quiet_output() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null for the duration (C-level prints included)."""
    libc = _libc()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved: list[tuple[int, int]] = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                continue
        yield
    finally:
        if libc is not None:
            libc.fflush(None)
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def import_pybullet() -> ModuleType:
    """``pybullet``, imported without its build-time banner."""
    if "pybullet" in sys.modules:
        return sys.modules["pybullet"]
    with quiet_output():
        import pybullet
    return pybullet


def connect() -> Any:
    """A new ``BulletClient`` in DIRECT mode (no GUI), connected quietly."""
    import_pybullet()
    from pybullet_utils import bullet_client

    import pybullet

    with quiet_output():
        return bullet_client.BulletClient(pybullet.DIRECT)
