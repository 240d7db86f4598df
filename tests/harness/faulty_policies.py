"""Policies that misbehave on one target scenario and drive like the expert everywhere else.

Suites name them as ``faulty_policies:Name`` with ``options = {target = "<scenario id>"}``; the
tests put this folder on the Ray workers' PYTHONPATH.
"""

from __future__ import annotations

import math
import os
import time

from sim.policies import make_policy


class _Faulty:
    def __init__(self, target: str, **options) -> None:
        self.target = target
        self.expert = make_policy("expert")
        self.armed = False
        self.steps = 0

    def reset(self, scenario_info) -> None:
        self.armed = scenario_info["scenario_id"] == self.target
        self.steps = 0
        self.expert.reset(scenario_info)

    def act(self, observation):
        self.steps += 1
        action = self.expert.act(observation)
        if self.armed and self.steps == 5:
            return self.misbehave(action)
        return action


class Raises(_Faulty):
    def misbehave(self, action):
        raise RuntimeError("planner blew up")


class ReturnsNaN(_Faulty):
    def misbehave(self, action):
        return action * math.nan


class Exits(_Faulty):
    """Kills its own worker process: only a process-isolated executor survives it."""

    def misbehave(self, action):
        os._exit(7)


class Hangs(_Faulty):
    def misbehave(self, action):
        time.sleep(120)
        return action


class SlowReset:
    """The expert, with a slow ``reset`` (so that a run can be interrupted midway)."""

    def __init__(self, delay_s: float = 0.4) -> None:
        self.delay_s = delay_s
        self.expert = make_policy("expert")

    def reset(self, scenario_info) -> None:
        time.sleep(self.delay_s)
        self.expert.reset(scenario_info)

    def act(self, observation):
        return self.expert.act(observation)


#: Resets this process has started (``HeldReset`` counts them; a driver's pre-check is one).
_RESETS = [0]


class HeldReset:
    """The expert; every reset after the first ``hold_after`` (in this process) waits for ``release`` to exist.

    A test interrupts a run at a known point with it, however fast the machine is: it waits for
    the first results, signals the run while it is held, and creates ``release`` before resuming.
    """

    def __init__(self, hold_after: int, release: str) -> None:
        self.hold_after, self.release = int(hold_after), release
        self.expert = make_policy("expert")

    def reset(self, scenario_info) -> None:
        _RESETS[0] += 1
        while _RESETS[0] > self.hold_after and not os.path.exists(self.release):
            time.sleep(0.02)
        self.expert.reset(scenario_info)

    def act(self, observation):
        return self.expert.act(observation)


#: What ``Leaks`` holds on to: never freed while its process lives.
_LEAKED: list[bytes] = []


class Leaks:
    """The expert, leaking ``mb`` [MB] per episode (resident: the bytes are written) in its process.

    With ``log``, each reset appends ``"<pid>\\n"`` to that file and each construction to
    ``<log>.init``, so a test can count the episodes each worker process ran and the policy
    instances made.
    """

    def __init__(self, mb: float = 8.0, log: str = "") -> None:
        self.mb, self.log = float(mb), log
        self.expert = make_policy("expert")
        if log:
            with open(log + ".init", "a") as f:
                f.write(f"{os.getpid()}\n")

    def reset(self, scenario_info) -> None:
        _LEAKED.append(b"\x01" * int(self.mb * 1e6))
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()}\n")
        self.expert.reset(scenario_info)

    def act(self, observation):
        return self.expert.act(observation)
