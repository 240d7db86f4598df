"""Executors: run tasks on workers and stream back one result per task, whatever goes wrong.

One interface, two implementations with the same behaviour and the same tests:

- ``SequentialExecutor``: one worker in this process; for debugging (pdb works).
- ``RayExecutor``: one Ray actor per worker, each keeping its worker (and so its pybullet
  world) between tasks; tasks go in chunks so Ray's overhead stays small against the work.

``make_executor(name, ...)`` picks one from the ``EXECUTORS`` registry (a plug-in may add more).
Both put the same ``paths`` (the runner passes the driver's working directory) at the front of
``sys.path`` before they build a worker, so a module imports under either or under neither.

A worker is built once per process by a picklable ``factory()`` and has a method
``run(task) -> value``. Every task yields exactly one ``TaskResult``: ok with the value, or an
error with its message (the task raised, timed out, or its worker process died more often than
``retries`` allows). One bad task never loses the results of the others.

Tasks may come from any iterable, a generator included: an executor draws them only as workers
free up (the Ray executor a chunk per idle worker), so a caller that plans tasks lazily keeps
a bounded number of them in memory, however many there are.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any, Protocol

from scenarios.common import Registry


class Worker(Protocol):
    def run(self, task: Any) -> Any: ...


WorkerFactory = Callable[[], Worker]


class TaskTimeout(Exception):
    """A task ran longer than the executor's ``timeout_s``."""


class WorkerStartupError(RuntimeError):
    """Workers did not finish building (their twin, plug-ins) within the start-up timeout, again
    and again: their construction hangs, so no task can run."""


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What became of one task.

    Attributes:
        index: the task's position in the submitted sequence.
        ok: the task returned a value.
        value: what ``worker.run`` returned (None on error).
        error: the error message ("" when ok): exception type and text, "timeout after ...", or
            "worker died ...".
        attempts: how many times the task was started.
        elapsed_s: wall time of the successful (or last) attempt inside the worker [s].
        worker: which worker ran it ("pid:<n>").
        traceback: the formatted traceback when the task raised ("" otherwise: ok, a timeout, a
            worker that died).
        rss_mb: the worker process's resident memory after the task [MB] (0.0: not measured).
    """

    index: int
    ok: bool
    value: Any = None
    error: str = ""
    attempts: int = 1
    elapsed_s: float = 0.0
    worker: str = ""
    traceback: str = ""
    rss_mb: float = 0.0


def resident_mb() -> float:
    """This process's resident memory [MB] (0.0 where ``/proc`` is missing)."""
    try:
        pages = int(open("/proc/self/statm").read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


#: The timeout [s] of the task running now (what ``_expire`` reports).
_ALARM_S = [0.0]


def _expire(signum: int, frame: Any) -> None:
    raise TaskTimeout(f"timeout after {_ALARM_S[0]:g} s")


@contextlib.contextmanager
def _alarm_handler() -> Iterator[None]:
    """Keep the SIGALRM handler of ``_deadline`` installed for a whole loop of tasks (installing
    it costs more than a trivial task); the previous handler comes back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _expire)
    try:
        yield
    finally:
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise ``TaskTimeout`` in this thread after ``seconds``; only on the main thread (no-op elsewhere)."""
    if not (math.isfinite(seconds) and seconds > 0) or threading.current_thread() is not threading.main_thread():
        yield
        return
    installed = signal.getsignal(signal.SIGALRM) is _expire
    previous = None if installed else signal.signal(signal.SIGALRM, _expire)
    _ALARM_S[0] = seconds
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if not installed:
            signal.signal(signal.SIGALRM, previous)


def run_one(worker: Worker, index: int, task: Any, timeout_s: float, attempts: int = 1, measure_rss: bool = True) -> TaskResult:
    """Run one task on ``worker``, turning any exception into an error result (``rss_mb`` only
    with ``measure_rss``: reading ``/proc`` costs tens of µs, more than a trivial task)."""
    start = time.perf_counter()
    name = f"pid:{os.getpid()}"
    try:
        with _deadline(timeout_s):
            value = worker.run(task)
    except TaskTimeout as exc:
        return TaskResult(
            index, False, error=str(exc), attempts=attempts, elapsed_s=time.perf_counter() - start, worker=name,
            rss_mb=resident_mb() if measure_rss else 0.0,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - a task's failure is data, not a crash of the run
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
        return TaskResult(
            index, False, error=f"{type(exc).__name__}: {exc}{where}", attempts=attempts,
            elapsed_s=time.perf_counter() - start, worker=name, traceback="".join(traceback.format_exception(exc)),
            rss_mb=resident_mb() if measure_rss else 0.0,
        )
    return TaskResult(
        index, True, value=value, attempts=attempts, elapsed_s=time.perf_counter() - start, worker=name,
        rss_mb=resident_mb() if measure_rss else 0.0,
    )  # fmt: skip


class Executor(abc.ABC):
    """Runs ``tasks`` with workers made by ``factory``; yields results as they finish (any order).

    Workers are recycled (a fresh one replaces it) after ``max_variants_per_worker`` tasks, and
    on executors with a process per worker when its resident memory passes
    ``max_worker_memory_mb`` [MB] (0: never); a task's result does not depend on its worker.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 300.0,
        retries: int = 1,
        paths: Sequence[str] = (),
        max_variants_per_worker: int = 0,
        max_worker_memory_mb: float = 0.0,
    ) -> None:
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.paths = tuple(str(p) for p in paths)
        self.max_variants_per_worker = int(max_variants_per_worker)
        self.max_worker_memory_mb = float(max_worker_memory_mb)

    @property
    @abc.abstractmethod
    def num_workers(self) -> int: ...

    @abc.abstractmethod
    def map(self, factory: WorkerFactory, tasks: Iterable[Any], total: int | None = None) -> Iterator[TaskResult]:
        """Yield exactly one ``TaskResult`` per task, in completion order.

        ``tasks`` is drawn lazily, only as workers free up, so at most a bounded number of tasks
        (about a chunk per worker) is in flight at any time; a result's ``index`` is its task's
        position in ``tasks``. ``total``: how many tasks there are, when ``tasks`` has no
        ``len`` (a hint for chunk sizes only).
        """

    def start(self, factory: WorkerFactory) -> None:
        """Begin starting the workers in the background (optional: ``map`` starts them anyway)."""

    def share(self, value: bytes) -> Any:
        """A handle by which every worker can read ``value`` (``fetch``), or None: the workers
        share this process's disk and read what they need themselves (the default)."""
        return None

    def close(self) -> None:
        """Release workers (the executor can be used again afterwards)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SequentialExecutor(Executor):
    """Every task in this process, one after another, on one worker; for debugging.

    It cannot survive a task that kills its own process (``os._exit``): use the Ray executor for
    untrusted policies.
    """

    @property
    def num_workers(self) -> int:
        return 1

    def __init__(self, *, timeout_s: float = 300.0, retries: int = 1, paths: Sequence[str] = (), max_variants_per_worker: int = 0) -> None:
        super().__init__(timeout_s=timeout_s, retries=retries, paths=paths, max_variants_per_worker=max_variants_per_worker)
        self._factory: WorkerFactory | None = None
        self._worker: Worker | None = None
        self._ran = 0

    def _worker_for(self, factory: WorkerFactory) -> Worker:
        """One worker per factory, kept across ``map`` calls until ``close``."""
        if self._factory is not factory or self._worker is None:
            self._factory, self._worker, self._ran = factory, factory(), 0
        return self._worker

    def map(self, factory: WorkerFactory, tasks: Iterable[Any], total: int | None = None) -> Iterator[TaskResult]:
        prepend_paths(self.paths)
        with _alarm_handler():  # installed once for the loop; between tasks no alarm is armed
            for index, task in enumerate(tasks):
                result = run_one(self._worker_for(factory), index, task, self.timeout_s, measure_rss=False)
                self._ran += 1
                if self.max_variants_per_worker and self._ran >= self.max_variants_per_worker:
                    self._retire()  # the next task gets a fresh worker (the memory ceiling needs a process of its own)
                yield result

    def _retire(self) -> None:
        closer = getattr(self._worker, "close", None)
        if callable(closer):
            closer()
        self._worker = None

    def close(self) -> None:
        self._retire()
        self._factory = None


class _ActorBody:
    """What each Ray actor holds: one worker, built on first use, kept between chunks."""

    def __init__(self, factory: WorkerFactory, timeout_s: float, paths: Sequence[str] = ()) -> None:
        prepend_paths(paths)
        self._factory = factory
        self._timeout_s = timeout_s
        self._worker: Worker | None = None

    def _ensure(self) -> Worker:
        if self._worker is None:
            self._worker = self._factory()
        return self._worker

    def ping(self) -> int:
        """Answers as soon as the actor runs (it has its CPU): the start of its start-up clock."""
        return os.getpid()

    def warm(self) -> int:
        """Build the worker now (and let it warm up: ``worker.warm()`` when it has one)."""
        worker = self._ensure()
        warm = getattr(worker, "warm", None)
        if callable(warm):
            try:
                warm()
            except Exception:  # noqa: BLE001 - a failing warm-up shows again, per task, in run_chunk
                pass
        return os.getpid()

    def run_chunk(self, items: list[tuple[int, Any, int]]) -> list[TaskResult]:
        worker = self._ensure()
        with _alarm_handler():
            return [run_one(worker, index, task, self._timeout_s, attempts) for index, task, attempts in items]


#: How long [s] a cluster's address may take to accept a connection before the run gives up.
CONNECT_TIMEOUT_S = 10.0
#: How long [s] a trial ``ray.init`` in a child process may take to join it (something that accepts
#: connections but is no Ray cluster makes ``ray.init`` retry for ever).
JOIN_TIMEOUT_S = 60.0


class ClusterUnreachable(ConnectionError):
    """A Ray cluster's address does not answer within ``CONNECT_TIMEOUT_S``."""


def _probe(address: str, timeout_s: float) -> None:
    """Open (and close) a TCP connection to ``host:port`` (or ``ray://host:port``); ``ClusterUnreachable`` if it fails."""
    from harness.config import host_port

    where = host_port(address)
    if where is None:
        return  # "auto" and the like: Ray resolves them itself
    try:
        socket.create_connection(where, timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterUnreachable(f"cannot reach a Ray cluster at {address!r} within {timeout_s:g} s ({exc}); is it running, and is the port open?") from None
    join = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False); ray.shutdown()"
    try:
        done = subprocess.run([sys.executable, "-c", join, address], capture_output=True, text=True, timeout=JOIN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ClusterUnreachable(f"{address!r} accepts connections but did not answer as a Ray cluster within {JOIN_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or [f"exit status {done.returncode}"]
        raise ClusterUnreachable(f"cannot join a Ray cluster at {address!r}: {last[0][:300]}")


#: The watchdog of the local Ray this process started (``harness.lifetime``).
_WATCHDOG: list[Any] = []


def init_ray(address: str = "", num_cpus: int | None = None, **options: Any) -> None:
    """Start (or join, with ``address``) Ray once per process, quietly; ``options`` go to ``ray.init``.

    Without ``address`` it always starts a new local Ray of this process's own (``address="local"``),
    never joining a cluster that ``RAY_ADDRESS`` or ``/tmp/ray/ray_current_cluster`` points at,
    and ties its lifetime to this process (``harness.lifetime``: if this process is killed, a
    watchdog ends the Ray processes it started). With ``address``, the address must answer within
    ``CONNECT_TIMEOUT_S`` (``ClusterUnreachable`` otherwise, instead of hanging).
    """
    import ray

    if address:
        _probe(address, CONNECT_TIMEOUT_S)
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False, **options)
        return
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    prefix = "Token authentication is enabled for this Ray cluster"  # Ray's default, said at every start

    def quiet(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(prefix)

    notice.addFilter(quiet)
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False, **options)
    finally:
        notice.removeFilter(quiet)
    from harness.lifetime import watch

    _WATCHDOG[:] = [watch(ray_session())]


def ray_session() -> str:
    """The name of the Ray session this process is connected to ("" when none)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)  # noqa: SLF001 - the public API does not expose it
    return str(getattr(node, "session_name", "") or "") if ray.is_initialized() else ""


class RayExecutor(Executor):
    """One Ray actor per worker; chunks of tasks; dead actors replaced; hung chunks killed.

    Args:
        workers: actors (0: one per CPU Ray sees). More than the cluster's CPUs warns; on a
            local Ray only as many as there are CPUs are made, on a cluster (``address``) the
            rest wait for the autoscaler to add nodes.
        address: a cluster to join ("" starts a local Ray of this process).
        chunk_size: tasks per call (0: about four chunks per worker, at most 8 tasks each).
        timeout_s: per task, enforced inside the actor; a chunk that overruns its tasks'
            total by a grace period has its actor killed and its tasks retried one by one. The
            clock of a chunk starts when its actor is up (its warm-up answered), never at
            submission: an actor still waiting for a CPU times nothing out.
        retries: how often a task whose actor died is started again before it is an error.
        startup_timeout_s: how long [s] an actor may take to build its worker (``warm``),
            counted from when it runs (has its CPU); one that overruns is killed and replaced,
            and after ``retries + 1`` such hangs ``map`` raises ``WorkerStartupError``.
        paths: directories each actor puts at the front of its ``sys.path`` before it builds its
            worker (the driver's working directory, so modules import as they do in the driver).
    """

    #: Extra wall time [s] a chunk gets beyond its tasks' timeouts before its actor is killed.
    KILL_GRACE_S = 30.0
    #: Default start-up timeout [s] (``startup_timeout_s``).
    STARTUP_TIMEOUT_S = 600.0

    def __init__(
        self,
        workers: int = 0,
        *,
        address: str = "",
        chunk_size: int = 0,
        timeout_s: float = 300.0,
        retries: int = 1,
        paths: Sequence[str] = (),
        max_variants_per_worker: int = 0,
        max_worker_memory_mb: float = 0.0,
        startup_timeout_s: float = 0.0,
    ) -> None:
        super().__init__(
            timeout_s=timeout_s, retries=retries, paths=paths,
            max_variants_per_worker=max_variants_per_worker, max_worker_memory_mb=max_worker_memory_mb,
        )
        self.startup_timeout_s = float(startup_timeout_s) or self.STARTUP_TIMEOUT_S
        self._pings: dict[Any, Any] = {}  # actor -> its ping() ref, until that answers
        self._placed: dict[Any, float] = {}  # actor -> when it ran (ping answered), while it warms
        self._startup_hangs = 0
        self.address = address
        self.chunk_size = int(chunk_size)
        self._requested = int(workers)
        self._pool: list[Any] = []
        self._pool_factory: WorkerFactory | None = None
        self._warming: dict[Any, Any] = {}  # actor -> its warm() ref, until that answers
        self._up: set[Any] = set()  # actors whose warm() answered: they take chunks
        self._workers: int | None = None
        self._ran: dict[int, int] = {}  # tasks run by each actor (by id of its handle)

    @property
    def num_workers(self) -> int:
        """Actors this executor runs: the request, bounded by the CPUs of a local Ray (see ``workers``)."""
        if self._workers is None:
            import ray

            init_ray(self.address)
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            self._workers = self._requested if self._requested > 0 else cpus
            if self._requested > cpus:
                where = "waiting for the autoscaler to add the rest" if self.address else f"using {cpus}"
                warnings.warn(
                    f"{self._requested} workers asked for but the Ray cluster has {cpus} CPUs; {where}",
                    RuntimeWarning, stacklevel=2,
                )  # fmt: skip
                if not self.address:
                    self._workers = cpus
        return self._workers

    def _chunk(self, n: int) -> int:
        size = self.chunk_size if self.chunk_size > 0 else max(1, min(8, n // (4 * self.num_workers)))
        return min(size, self.max_variants_per_worker) if self.max_variants_per_worker else size

    def _actor_class(self) -> Any:
        import ray

        return ray.remote(num_cpus=1, max_restarts=0)(_ActorBody)

    def start(self, factory: WorkerFactory) -> None:
        """Create the actors and have them build (and warm) their workers while the caller goes on.

        The pool is kept across ``map`` calls with the same ``factory`` (an adaptive search maps
        once per round) until ``close``.
        """
        init_ray(self.address)
        if self._pool_factory is not factory:
            self.close()
            self._pool_factory = factory
        while len(self._pool) < self.num_workers:
            self._pool.append(self._new_actor(factory))

    def _new_actor(self, factory: WorkerFactory) -> Any:
        """An actor, warming up; it takes chunks once ``warm`` has answered (``_check_warm``)."""
        actor = self._actor_class().remote(factory, self.timeout_s, self.paths)
        self._pings[actor] = actor.ping.remote()
        self._warming[actor] = actor.warm.remote()
        return actor

    def _check_warm(self) -> None:
        """Note the actors whose warm-up answered (or failed: a dead actor's chunk fails on its own);
        replace one whose warm-up overran ``startup_timeout_s`` since it ran (``WorkerStartupError``
        once that happened more than ``retries`` times)."""
        import ray

        if not self._warming:
            return
        now = time.monotonic()
        if self._pings:
            refs = {ref: actor for actor, ref in self._pings.items()}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
            for ref in ready:
                self._placed[refs[ref]] = now
                del self._pings[refs[ref]]
        refs = {ref: actor for actor, ref in self._warming.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in ready:
            actor = refs[ref]
            del self._warming[actor]
            self._placed.pop(actor, None)
            self._up.add(actor)
        for actor, placed in list(self._placed.items()):
            if now - placed > self.startup_timeout_s and actor in self._warming:
                self._startup_hangs += 1
                ray.kill(actor)
                self._replace(actor)
                if self._startup_hangs > self.retries:
                    raise WorkerStartupError(
                        f"a worker did not finish starting (building its twin and plug-ins) within {self.startup_timeout_s:g} s, "
                        f"{self._startup_hangs} times; its construction hangs, so no variant can run"
                    )

    def _replace(self, dead: Any) -> Any:
        """A fresh actor in ``dead``'s place in the pool, and ``dead`` (killed or lost) forgotten."""
        fresh = self._new_actor(self._pool_factory)
        self._pool[self._pool.index(dead)] = fresh
        for table in (self._warming, self._pings, self._placed):
            table.pop(dead, None)
        self._up.discard(dead)
        self._ran.pop(id(dead), None)
        return fresh

    def share(self, value: bytes) -> Any:
        """``value`` put once in Ray's object store: workers on any node fetch it (``fetch``)."""
        import ray

        init_ray(self.address)
        return ray.put(value)

    def ready(self, factory: WorkerFactory) -> list[int]:
        """Start the pool (``start``) and wait until every worker is built and warm; their pids."""
        import ray

        self.start(factory)
        return ray.get([actor.warm.remote() for actor in self._pool])

    def close(self) -> None:
        import ray

        if self._pool and ray.is_initialized():
            for actor in self._pool:
                ray.kill(actor)
        self._pool = []
        self._pool_factory = None
        self._warming.clear()
        self._pings.clear()
        self._placed.clear()
        self._up.clear()
        self._ran = {}

    def map(self, factory: WorkerFactory, tasks: Iterable[Any], total: int | None = None) -> Iterator[TaskResult]:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, WorkerCrashedError

        n = len(tasks) if isinstance(tasks, Sized) else total
        if n == 0:
            return
        self.start(factory)
        size = self._chunk(n if n is not None else 8 * 4 * self.num_workers)
        source = enumerate(tasks)
        # chunks lost with their actor, split into single tasks, go first; then fresh ones, drawn
        # from ``tasks`` only when an actor is free for them
        queue: deque[list[tuple[int, Any, int]]] = deque()
        exhausted = False

        def next_chunk() -> list[tuple[int, Any, int]] | None:
            nonlocal exhausted
            if queue:
                return queue.popleft()
            if exhausted:
                return None
            chunk = [(index, task, 1) for index, task in itertools.islice(source, size)]
            exhausted = len(chunk) < size
            return chunk or None

        # A chunk goes only to an actor that is up (its warm-up answered), one chunk at a time, so
        # a chunk's clock starts when it starts to run: an actor still waiting for a CPU (or for
        # the autoscaler's node) holds no work and times nothing out.
        running: dict[Any, tuple[Any, list[tuple[int, Any, int]], float]] = {}
        busy: set[Any] = set()

        def replace(dead: Any) -> Any:
            busy.discard(dead)
            return self._replace(dead)

        try:
            while queue or running or not exhausted:
                self._check_warm()
                for actor in [a for a in self._pool if a in self._up and a not in busy]:
                    chunk = next_chunk()
                    if chunk is None:
                        break
                    busy.add(actor)
                    running[actor.run_chunk.remote(chunk)] = (actor, chunk, time.monotonic())
                ready, _ = ray.wait(list(running) + list(self._warming.values()), num_returns=1, timeout=1.0)
                for ref in ready:
                    if ref not in running:
                        continue  # a warm-up answered: that actor takes work next time round
                    actor, chunk, _started = running.pop(ref)
                    busy.discard(actor)
                    try:
                        results = ray.get(ref)
                    except (RayActorError, WorkerCrashedError) as exc:
                        replace(actor)
                        yield from self._requeue(queue, chunk, f"worker died ({_cause(exc)})")
                        continue
                    self._recycled(actor, results, replace)  # a fresh one warms up before it takes work
                    yield from results
                now = time.monotonic()
                for ref, (actor, chunk, started) in list(running.items()):
                    if now - started > len(chunk) * self.timeout_s + self.KILL_GRACE_S:
                        running.pop(ref)
                        ray.kill(actor)
                        with contextlib.suppress(GetTimeoutError, RayActorError, WorkerCrashedError):
                            ray.get(ref, timeout=0)
                        replace(actor)
                        yield from self._requeue(queue, chunk, f"timeout after {self.timeout_s:g} s (worker killed)")
        finally:
            if running:  # stopped midway (an interrupt): those actors are busy with stale work
                for actor, _chunk, _started in running.values():
                    ray.kill(actor)
                    replace(actor)

    def _recycled(self, actor: Any, results: list[TaskResult], replace: Callable[[Any], Any]) -> Any:
        """``actor``, or a fresh one in its place once it ran ``max_variants_per_worker`` tasks or passed
        ``max_worker_memory_mb``."""
        import ray

        ran = self._ran.pop(id(actor), 0) + len(results)
        over_count = self.max_variants_per_worker and ran >= self.max_variants_per_worker
        over_memory = self.max_worker_memory_mb and max((r.rss_mb for r in results), default=0.0) > self.max_worker_memory_mb
        if not (over_count or over_memory):
            self._ran[id(actor)] = ran
            return actor
        ray.kill(actor)
        return replace(actor)

    def _requeue(self, queue: deque, chunk: list[tuple[int, Any, int]], reason: str) -> Iterator[TaskResult]:
        """After a lost chunk: split it into single tasks; a single task that was lost counts an attempt."""
        if len(chunk) > 1:
            queue.extendleft([item] for item in reversed(chunk))
            return
        index, task, attempts = chunk[0]
        if attempts > self.retries:
            yield TaskResult(index, False, error=f"{reason}; gave up after {attempts} attempts", attempts=attempts)
        else:
            queue.append([(index, task, attempts + 1)])


def _cause(exc: BaseException) -> str:
    """The most telling line of a Ray error (its innermost ``...Error: ...`` line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "Error:" in line and "ray.exceptions" not in line]
    return (errors[-1] if errors else type(exc).__name__)[:300]


class UnknownExecutor(ValueError, LookupError):
    """No executor is registered under the name asked for."""


#: Executors by name: ``factory(workers, **options) -> Executor``. A plug-in adds its own with
#: ``@EXECUTORS.decorator("name")``; ``[run] executor = "name"`` selects it.
EXECUTORS: Registry[Callable[..., Executor]] = Registry("executor", lambda name, message: UnknownExecutor(message))


@EXECUTORS.decorator("sequential")
def _sequential(
    workers: int = 0, *, timeout_s: float = 300.0, retries: int = 1, paths: Sequence[str] = (), max_variants_per_worker: int = 0, **_ray_only: Any
) -> Executor:
    """One worker in this process (``workers``, ``address``, ``chunk_size`` and ``max_worker_memory_mb`` do not apply)."""
    return SequentialExecutor(timeout_s=timeout_s, retries=retries, paths=paths, max_variants_per_worker=max_variants_per_worker)


@EXECUTORS.decorator("ray")
def _ray(workers: int = 0, **options: Any) -> Executor:
    return RayExecutor(workers, **options)


def make_executor(kind: str, workers: int = 0, **options: Any) -> Executor:
    """The executor registered as ``kind`` ("ray", "sequential", or a plug-in's) with ``workers``."""
    return EXECUTORS.get(kind)(workers, **options)


def fetch(handle: Any) -> Any:
    """What ``Executor.share`` shared: from Ray's object store for a Ray handle, else the handle itself."""
    if type(handle).__name__ == "ObjectRef":
        import ray

        return ray.get(handle)
    return handle


def prepend_paths(paths: Sequence[str]) -> None:
    """Put ``paths`` at the front of ``sys.path`` (in order), each once."""
    for path in reversed(list(paths)):
        if path not in sys.path:
            sys.path.insert(0, path)
