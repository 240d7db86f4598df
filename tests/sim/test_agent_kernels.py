"""The compiled agent kernels (``sim.agent_kernels``) against the numpy reference in ``sim.agents``,
on random inputs: random paths for the path lookup; random states of a real scene's reactive
agents (on and off their logs, bodies pushed off theirs, the ego anywhere near) for a whole step.
Every output must be equal bit for bit (NaN where NaN)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import agent_kernels
from sim.agents import PathBank, ReactiveAgents

pytestmark = pytest.mark.skipif(not agent_kernels.AVAILABLE, reason="numba is not installed")


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes and bits (NaN equals NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_path_lookup_equals_pathbank_at(seed: int) -> None:
    """Paths of 1 to 12 points, some repeated (zero-length segments), looked up before their start,
    along them and past their end."""
    rng = np.random.default_rng(seed)
    paths = []
    for _ in range(int(rng.integers(1, 6))):
        p = int(rng.integers(1, 13))
        pts = np.cumsum(rng.normal(0.0, 3.0, (p, 2)), axis=0)
        if p > 2:
            pts[int(rng.integers(1, p))] = pts[int(rng.integers(0, p))]
        paths.append((pts, rng.uniform(-np.pi, np.pi, p)))
    bank = PathBank(paths)
    agents = np.arange(len(paths), dtype=np.int64)
    s = rng.uniform(-5.0, bank.length.max() + 10.0, len(paths))
    offsets = np.concatenate([[0.0], rng.uniform(-3.0, 30.0, 7)])
    x, y, travel = agent_kernels.path_samples(bank._table, bank._key, bank.OFFSET, agents, s, offsets)
    xy, yaw, ref_travel = bank.at(np.broadcast_to(agents[:, None], (len(agents), len(offsets))), s[:, None] + offsets[None, :])
    assert same(x, xy[..., 0]) and same(y, xy[..., 1]) and same(travel, ref_travel)
    for a in range(len(paths)):
        px, py, pyaw, ptravel = agent_kernels._at(bank._table, bank._key, bank.OFFSET, a, float(s[a]))
        assert (px, py, pyaw, ptravel) == (xy[a, 0, 0], xy[a, 0, 1], yaw[a, 0], ref_travel[a, 0])


@pytest.fixture(scope="module")
def scene_agents(data_dir):
    """The reactive agents of a real Waymo scene (81 agents, two crossings) and its plan."""
    import scenarios
    from sim.config import EnvConfig
    from sim.plan import compile_plan

    path = data_dir / "waymo_json" / "tfrecord-00000-of-01000_4.json"
    if not path.exists():
        pytest.skip("the Waymo JSON sample is not in the data directory")
    plan = compile_plan(scenarios.load(path)[0], EnvConfig(agents_mode="reactive"))
    return plan, ReactiveAgents.from_plan(plan)


MUTABLE = ("s", "v", "alive", "replaying", "_served", "_yielder")


def random_step(plan, agents: ReactiveAgents, rng: np.random.Generator, k: int | None = None) -> tuple[int, dict[str, np.ndarray]]:
    """Put ``agents`` in a random state at step ``k`` (None: a random one, the log's last included):
    some off their logs (ahead or behind, faster or slower, some standing), some bodies pushed off
    theirs, the ego near its log or far from it. Returns the step and the bodies (as
    ``DriveTwinEnv._leader_bodies`` builds them)."""
    s_steps = agents.s_log.shape[1]
    k = int(rng.integers(0, s_steps)) if k is None else k
    agents.reset(0)
    agents._k = k
    agents.alive = agents.present(k) & (rng.random(len(agents.rows)) < 0.95)
    off = agents.alive & (rng.random(len(agents.rows)) < float(rng.choice([0.05, 0.3, 0.8])))
    agents.replaying = agents.alive & ~off
    agents.s = agents.s_log[:, k] + np.where(off, rng.normal(0.0, 4.0, len(off)), 0.0)
    agents.v = np.maximum(agents.v_log[:, k] + np.where(off, rng.normal(0.0, 3.0, len(off)), 0.0), 0.0)
    agents.v[off & (rng.random(len(off)) < 0.2)] = 0.0
    # crossings: both reactive sides near the crossing, off their logs (within reach of a yield)
    rules = agents.rules
    for c in (rng.random(len(rules.conflict_i)) < 0.7).nonzero()[0]:
        for j, at in ((rules.conflict_i[c], rules.conflict_si[c]), (rules.conflict_j[c], rules.conflict_sj[c])):
            if j < len(agents.rows) and agents.alive[j]:
                agents.s[j] = at - rng.uniform(-4.0, 25.0)
                agents.v[j] = rng.uniform(0.0, 12.0)
                agents.replaying[j] = False
    # a yielding side is a reactive agent (a passive road user never yields)
    yielder = rng.integers(-1, 2, len(agents._yielder))
    agents._yielder[:] = np.where((yielder == 1) & (agents.rules.conflict_j >= len(agents.rows)), 0, yielder)
    agents._served[:] = rng.random(len(agents._served)) < 0.5
    state = plan.stack[k].copy()
    present = plan.others[k].copy()
    state[:, agents.rows] = agents.state()
    present[agents.rows] = agents.alive
    rows = np.flatnonzero(present)
    passive = np.setdiff1d(rows, agents.rows)
    pushed = passive[rng.random(len(passive)) < 0.3]
    state[0, pushed] += rng.normal(0.0, 3.0, len(pushed))
    state[1, pushed] += rng.normal(0.0, 3.0, len(pushed))
    ex, ey, eyaw, espeed = plan.ego_log[min(k, len(plan.ego_log) - 1)]
    ex, ey = np.array([ex, ey]) + rng.normal(0.0, float(rng.choice([0.0, 2.0, 15.0])), 2)
    moving = (agents.alive & (agents.v_log[:, k] > 0.5)).nonzero()[0]
    if moving.size and rng.random() < 0.7:  # the ego on a moving agent's path, 1 to 40 m ahead of it: a leader
        j = int(rng.choice(moving))
        px, py, _, ptravel = agents.bank.sample(np.array([j]), np.array([agents.s[j] + rng.uniform(1.0, 40.0)]))
        ex, ey = float(px[0]) + rng.normal(0.0, 0.7), float(py[0]) + rng.normal(0.0, 0.7)
        eyaw = float(ptravel[0]) + rng.normal(0.0, 0.5)
    ego = (ex, ey, eyaw, espeed * np.cos(eyaw), espeed * np.sin(eyaw))
    b = np.empty((7, len(rows) + 1))
    b[:5, :-1] = state[:, rows]
    b[:5, -1] = ego
    b[5:, :-1] = plan.sizes[rows, :2].T
    b[5:, -1] = plan.params.length, plan.params.width
    bodies = {"x": b[0], "y": b[1], "yaw": b[2], "vx": b[3], "vy": b[4], "length": b[5], "width": b[6],
              "row": np.append(rows, plan.ego_row)}
    return k, bodies


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_whole_step_equals_the_reference(scene_agents, seed: int) -> None:
    """From the same random state, one ``step`` on each path: the same leaders, gaps, yielders,
    stop-sign memory, arc lengths, speeds, replaying flags, spawns and states."""
    whole_step_on_both_paths(*scene_agents, np.random.default_rng(seed))


@pytest.mark.parametrize("back", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_the_logs_last_steps_equal_the_reference(scene_agents, seed: int, back: int) -> None:
    """As ``test_a_whole_step_equals_the_reference`` at the log's last two steps (which the random
    draw gives 2 times in S = 91): S - 2, the last the env steps from (to the log's end, where the
    episode ends), and S - 1, where nothing replays (every live agent runs the law) and there is no
    next logged step to snap back to (the state after it, at step S, is not asked for)."""
    plan, agents = scene_agents
    whole_step_on_both_paths(plan, agents, np.random.default_rng(seed), agents.s_log.shape[1] - back)


def whole_step_on_both_paths(plan, agents: ReactiveAgents, rng: np.random.Generator, k: int | None = None) -> None:
    """One ``step`` from the same random state (``random_step``) on the numpy and the compiled path,
    each of its parts' outputs equal bit for bit."""
    k, bodies = random_step(plan, agents, rng, k)
    start = {name: getattr(agents, name).copy() for name in MUTABLE}
    results = {}
    try:
        for compiled in (False, True):
            agents.compiled = compiled
            for name, value in start.items():
                setattr(agents, name, value.copy())
            agents._k = k
            agents._mark_off_log(k, bodies)
            if agents.rules.passive_rows.size:
                agents._passive_state(bodies)
            held = agents._held_back(k, bodies)
            stop = agents._stop_gaps(k)
            # the step itself, from the same start (``_stop_gaps`` above moved the yielders and signs on)
            for name, value in start.items():
                setattr(agents, name, value.copy())
            blocked = agents._blocked(k, (agents.present(k) & ~agents.alive).nonzero()[0], bodies)
            agents.step(k, bodies)
            after = agents.state() if k + 1 < agents.s_log.shape[1] else None  # no logged state past the log's end
            results[compiled] = (*held, agents._moving.copy(), stop, blocked, *(getattr(agents, n).copy() for n in MUTABLE),
                                 after)
    finally:
        del agents.compiled  # back to the class default
    for i, (ref, fast) in enumerate(zip(results[False], results[True])):
        assert same(ref, fast), (i, ref, fast)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_box_overlap_equals_scenarios_geometry(seed: int) -> None:
    """Pairs of oriented boxes from apart to overlapping, some touching corners (the SAT's edge cases)."""
    from scenarios.geometry import boxes_overlap

    rng = np.random.default_rng(seed)
    n = 200
    x1, y1, x2, y2 = (rng.normal(0.0, 3.0, n) for _ in range(4))
    yaw1, yaw2 = rng.uniform(-np.pi, np.pi, n), rng.choice([0.0, np.pi / 2, rng.uniform(-np.pi, np.pi)], n)
    l1, w1, l2, w2 = (rng.choice([0.5, 1.9, 4.5, rng.uniform(0.3, 12.0)], n) for _ in range(4))
    ref = boxes_overlap(x1, y1, yaw1, l1, w1, x2, y2, yaw2, l2, w2)
    d1, d2 = np.hypot(l1, w1), np.hypot(l2, w2)
    fast = np.array([agent_kernels._boxes_overlap(x1[i], y1[i], yaw1[i], l1[i], w1[i], d1[i], x2[i], y2[i], yaw2[i], l2[i],
                                                  w2[i], d2[i]) for i in range(n)])
    assert ref.any() and not ref.all()
    assert np.array_equal(fast, ref)


NO_CACHE_DIR = """
import numba.core.caching as caching
import numpy as np
caching.CacheImpl._locator_classes = []  # what numba finds without a writable cache directory
from sim import agent_kernels
r = np.ones(3, np.bool_)
s, v, rep = agent_kernels.integrate(np.full(3, 2.0), ~r, np.zeros(3), np.ones(3), 0.5, r, ~r, np.zeros(3), np.zeros(3),
                                    False, 0.1, 0.1)
print(s.tolist(), v.tolist(), rep.tolist(), type(agent_kernels.integrate._cache).__name__,
      type(agent_kernels.held_back._cache).__name__)
"""


def test_the_kernels_compile_in_memory_without_a_writable_cache_directory(tmp_path) -> None:
    """Where numba has no cache locator (read-only install, no ``NUMBA_CACHE_DIR``), ``cache=True``
    raises at decoration; the kernels are compiled in memory instead, quietly."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(agent_kernels.__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", NO_CACHE_DIR], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["[0.75, 0.75, 0.75] [2.0, 2.0, 2.0] [False, False, False] NullCache NullCache", ""]
    assert out.stderr == ""


def test_warm_compiles_every_entry_point_for_the_types_the_env_passes(make_env, data_dir) -> None:
    """After ``warm()`` each kernel ``sim.agents`` calls has one compiled signature, and a reactive
    episode on a scene with crossings and spawns adds none (nothing compiles inside its steps)."""
    import scenarios

    agent_kernels.warm()
    kernels = {name: getattr(agent_kernels, name) for name in agent_kernels.ENTRY_POINTS}
    assert set(kernels) == {"held_back", "conflicts", "law", "integrate", "state", "blocked"}
    before = {name: list(fn.signatures) for name, fn in kernels.items()}
    assert all(len(sigs) == 1 for sigs in before.values()), before
    path = data_dir / "waymo_json" / "tfrecord-00000-of-01000_4.json"
    if not path.exists():
        pytest.skip("the Waymo JSON sample is not in the data directory")
    env = make_env(scenarios.load(path)[0], agents_mode="reactive", terminate_on_collision=False,
                   terminate_on_offroad=False, terminate_on_goal=False)
    env.reset(seed=0)
    assert env._reactive is not None and len(env._reactive.rules.conflict_i)
    zero = np.zeros(2, np.float32)
    for _ in range(60):
        env.step(zero)
    assert {name: list(fn.signatures) for name, fn in kernels.items()} == before


LAZY = """
import sys
import sim.env
from sim import agent_kernels
from sim.agents import ReactiveAgents
print("numba" in sys.modules, agent_kernels.AVAILABLE, ReactiveAgents.compiled)
agent_kernels.warm()
print("numba" in sys.modules, type(agent_kernels.held_back).__name__)
"""


def test_numba_is_imported_at_the_kernels_first_use_not_with_the_env(tmp_path) -> None:
    """``import sim.env`` (a replay-only process) does not import numba; ``warm`` (or a kernel's
    first call, or ``ReactiveAgents``) does, and binds the kernels to numba's dispatchers."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(agent_kernels.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["False True True", "True CPUDispatcher", ""]


WITHOUT_NUMBA = """
import sys
sys.modules["numba"] = None  # as if it were not installed
from sim import agent_kernels
from sim.agents import ReactiveAgents
agent_kernels.warm()
print(agent_kernels.AVAILABLE, ReactiveAgents.compiled, agent_kernels.load(), agent_kernels.integrate.__module__,
      type(agent_kernels.integrate).__name__)
"""


def test_without_numba_warm_is_a_no_op_and_the_agents_take_the_numpy_path(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(agent_kernels.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", WITHOUT_NUMBA], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["False False False sim.agent_kernels function", ""]
    assert out.stderr == ""


def test_a_kernel_imported_before_load_still_runs() -> None:
    """A name taken before ``load`` (``from sim.agent_kernels import ...``) is the placeholder: its
    call loads every kernel (a kernel calls others by name) and runs the compiled one. In a fresh
    process, so that nothing has loaded them yet."""
    if not agent_kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    code = """
import sys
from sim.agent_kernels import _np_min
import sim.agent_kernels as k
assert type(_np_min).__name__ == "_Kernel" and "numba" not in sys.modules
assert _np_min(1.0, float("nan")) != _np_min(1.0, float("nan"))  # NaN wins, as np.minimum
assert _np_min(2.0, 1.0) == 1.0 and _np_min(a=2.0, b=1.0) == 1.0  # keywords too
assert "numba" in sys.modules and k._compiled is True
assert all(type(getattr(k, name)).__name__ == "CPUDispatcher" for name in k._KERNELS)
assert len(k._np_min.signatures) == 1  # the call went through the compiled dispatcher
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_rules_assigned_after_reset_size_the_yielders(scene_agents) -> None:
    """Rules given after ``reset`` (where ``_yielder`` used to be sized) size the per-conflict and
    per-stop state at once: the conflicts kernel, which checks no bounds, never writes past it."""
    from sim.agents import TrafficRules

    plan, _ = scene_agents
    agents = ReactiveAgents.from_plan(plan)
    rules = agents.rules
    c, k = len(rules.conflict_i), len(rules.stop_agent)
    assert c >= 2
    agents.rules = TrafficRules()
    agents.reset(0)
    agents.rules = rules
    assert agents._yielder.tolist() == [-1] * c and agents._served.tolist() == [False] * k
    rng = np.random.default_rng(5)
    step, bodies = random_step(plan, agents, rng)
    start = {name: getattr(agents, name).copy() for name in MUTABLE}
    gaps = {}
    for compiled in (False, True):
        agents.compiled = compiled
        for name, value in start.items():
            setattr(agents, name, value.copy())
        agents._mark_off_log(step, bodies)
        agents._passive_state(bodies)
        gaps[compiled] = (agents._stop_gaps(step), agents._yielder.copy())
    assert same(gaps[False][0], gaps[True][0]) and same(gaps[False][1], gaps[True][1])
    agents._yielder = np.full(c - 1, -1, np.int64)  # sized by hand, wrongly: refused before the kernel runs
    with pytest.raises(ValueError, match=rf"_yielder: {c - 1} entries for {c} conflicts"):
        agents._stop_gaps(step)


def test_rules_that_do_not_fit_the_agents_are_refused(scene_agents) -> None:
    """A field of the wrong length, or an agent or signal index out of range, names the field."""
    import dataclasses

    plan, _ = scene_agents
    agents = ReactiveAgents.from_plan(plan)
    rules = agents.rules
    r, c = len(agents.rows), len(rules.conflict_i)
    with pytest.raises(ValueError, match=rf"TrafficRules.conflict_sign: shape \(2, {c - 1}\), expected \(2, {c}\)"):
        agents.rules = dataclasses.replace(rules, conflict_sign=rules.conflict_sign[:, 1:])
    bad = rules.conflict_i.copy()
    bad[0] = r
    with pytest.raises(ValueError, match=rf"TrafficRules.conflict_i: values .*{r} outside \[0, {r}\)"):
        agents.rules = dataclasses.replace(rules, conflict_i=bad)
    signal = rules.conflict_signal.copy()
    signal[0, 0] = len(rules.signal_states)
    with pytest.raises(ValueError, match=r"TrafficRules.conflict_signal: values"):
        agents.rules = dataclasses.replace(rules, conflict_signal=signal)
    assert agents.rules is rules  # unchanged by the refused ones


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_fork_while_another_thread_holds_the_load_lock_does_not_deadlock_the_child() -> None:
    """A child forked while a thread of the parent is inside ``load`` gets a free lock."""
    import os
    import threading

    from sim import agent_kernels

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with agent_kernels._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: take the lock the parent's thread holds, with a bound
        os._exit(0 if agent_kernels._lock.acquire(timeout=5) else 1)
    release.set()
    thread.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
