"""Suite configs: TOML files loaded into frozen, validated config objects.

A suite says which scenarios to run (libraries or raw log files), with which egos, which policy,
in which twin, under which mutations, scored by which evaluators, gated by which thresholds, with
which seed and how many workers, with which plug-in modules loaded first. Every table rejects
unknown keys with a ``ConfigError`` naming the file and the key; every config object checks its
values in ``__post_init__``, so an invalid one cannot be built (the loader adds the file's name).

Example (``configs/smoke.toml``)::

    [suite]
    name = "smoke"

    [scenarios]
    sources = ["sample"]
    egos = "logged"

    [policy]
    name = "expert"

    [run]
    seed = 0
    workers = 2
"""

from __future__ import annotations

import dataclasses
import enum
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.executor import RayExecutor
from scenarios.common import dataclass_from_mapping, plain


#: The source of a config built in code (not loaded from a file).
MEMORY = "<memory>"


class ConfigError(ValueError):
    """A bad suite config: names the file, the key and the problem."""

    def __init__(self, source: object, key: str, problem: str) -> None:
        self.source, self.key, self.problem = str(source), key, problem
        super().__init__(f"{self.source}: {key}: {problem}" if key else f"{self.source}: {problem}")

    def __reduce__(self):
        return (type(self), (self.source, self.key, self.problem))


def _invalid(key: str, problem: str) -> ConfigError:
    """The error a ``__post_init__`` raises; the loader puts the file's name in (``_build``)."""
    return ConfigError(MEMORY, key, problem)


def _enum(cls: type[enum.Enum], value: Any, key: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in cls)
        raise _invalid(key, f"must be one of {choices}, got {value!r}") from None


class Egos(str, enum.Enum):
    LOGGED = "logged"
    VEHICLES = "vehicles"


@dataclass(frozen=True, slots=True)
class ScenariosConfig:
    """Where the scenarios come from and which of them run.

    Attributes:
        sources: library directories, raw log files (any supported format) or "sample".
        egos: "logged" or "vehicles" (every vehicle of each log as its own ego).
        window_s: cut raw logs longer than this into windows [s]; 0 keeps them whole.
        min_ego_duration_s: least time an ego must be observed [s].
        min_ego_travel_m: with ``egos = "vehicles"``, least distance a vehicle must get from
            where it is first seen to be an ego [m] (5 m: parked cars are not egos; 0 keeps them).
        datasets, tags, ids: keep only these (empty: all).
        limit: at most this many scenarios, in id order (0: all).
    """

    sources: tuple[str, ...] = ("sample",)
    egos: Egos = Egos.LOGGED
    window_s: float = 0.0
    min_ego_duration_s: float = 2.0
    min_ego_travel_m: float = 5.0
    datasets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    limit: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "egos", _enum(Egos, self.egos, "scenarios.egos"))
        if not self.sources:
            raise _invalid("scenarios.sources", "must name at least one library or log file")
        for key in ("window_s", "min_ego_duration_s"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise _invalid(f"scenarios.{key}", f"must be a finite number of seconds >= 0, got {value}")
        if not (math.isfinite(self.min_ego_travel_m) and 0 <= self.min_ego_travel_m < 1e6):
            raise _invalid("scenarios.min_ego_travel_m", f"must be a distance in [0, 1e6) m, got {self.min_ego_travel_m}")
        if self.limit < 0:
            raise _invalid("scenarios.limit", f"must not be negative (0: all), got {self.limit}")


#: What a remote planner's command runs on a deadline miss (``harness.remote.client.FALLBACKS``).
POLICY_FALLBACKS = ("previous", "brake")


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The policy under test.

    Attributes:
        name: a built-in baseline or ``package.module:Name`` (``options`` go to its constructor);
            with ``address`` or ``command``, the name the rows record ("" : the planner's own).
        address: a planner server (shared by the workers): ``"host:port"`` (gRPC), or on the
            lock-step frames transport ``"unix+frames:///path.sock"`` or
            ``"tcp+frames://host:port"``; or a list of them, one per worker (``harness.remote``).
        command: a planner to start once per worker: ``"./my_planner --port {port}"`` (gRPC)
            or ``"./my_planner --socket {socket}"`` (frames on a Unix socket).
        realtime_factor: 0 for lock-step; else steps paced to the wall clock at this factor.
        fallback: a remote planner's deadline miss executes the "previous" command or a "brake".
    """

    name: str = "expert"
    options: Mapping[str, Any] = field(default_factory=dict)
    address: str | tuple[str, ...] = ""
    command: str = ""
    realtime_factor: float = 0.0
    fallback: str = "previous"

    @property
    def remote(self) -> bool:
        """Whether the policy is a planner in another process (``address`` or ``command``)."""
        return bool(self.address or self.command)

    def __post_init__(self) -> None:
        if isinstance(self.address, list):
            object.__setattr__(self, "address", tuple(self.address))
        if not self.name and not self.remote:
            raise _invalid("policy.name", "must not be empty")
        addresses = (self.address,) if isinstance(self.address, str) else self.address
        if not isinstance(addresses, tuple) or not all(isinstance(a, str) for a in addresses):
            raise _invalid("policy.address", f"must be \"host:port\" or a list of them, got {self.address!r}")
        for a in addresses if self.address else ():
            problem = planner_address_problem(a)
            if problem:
                raise _invalid("policy.address", problem)
        if self.address and self.command:
            raise _invalid("policy.command", "give address or command, not both")
        if self.command and ("{port}" in self.command) == ("{socket}" in self.command):
            raise _invalid(
                "policy.command",
                f"must contain {{port}} (the gRPC port drivetwin picks) or {{socket}} (the path of a Unix socket for the frames transport), one of them, got {self.command!r}",
            )
        if self.remote and self.options:
            raise _invalid("policy.options", "not used with address or command: give them to the planner (drivetwin serve-policy NAME --options JSON)")
        if not (math.isfinite(self.realtime_factor) and self.realtime_factor >= 0):
            raise _invalid("policy.realtime_factor", f"must be 0 (lock-step) or positive, got {self.realtime_factor}")
        if self.fallback not in POLICY_FALLBACKS:
            raise _invalid("policy.fallback", f"must be one of {', '.join(map(repr, POLICY_FALLBACKS))}, got {self.fallback!r}")


#: Keys of a ``[[mutations]]`` table that the harness reads; the rest is a ``MutationPlan`` table.
HARNESS_MUTATION_KEYS = ("name", "rounds", "objective")
#: Samplers that learn from scores (run in rounds, each proposing ``variants``).
ADAPTIVE_SAMPLERS = ("cem",)
#: Upper bounds a suite may ask for: variants per scenario of one sweep (per round for "cem"),
#: rounds of an adaptive sweep, workers of a run. Beyond them a typo would allocate gigabytes
#: (or start a million actors) before anything runs.
MAX_VARIANTS = 100_000
MAX_ROUNDS = 1_000
MAX_WORKERS = 1_024


def objective_columns() -> list[str]:
    """The numeric summary columns an adaptive sweep may drive down (registered metrics included)."""
    import pyarrow as pa

    from evaluators.report import summary_schema

    numeric = (pa.types.is_floating, pa.types.is_integer, pa.types.is_boolean)
    return [f.name for f in summary_schema() if any(check(f.type) for check in numeric)]


@dataclass(frozen=True, slots=True)
class MutationConfig:
    """One mutation sweep of a suite.

    Attributes:
        table: the ``scenarios.mutations.MutationPlan`` table: ``operator`` and ``params`` (or a
            ``chain``), ``sampler`` ("random", "halton", "lhs", "grid", "cem"), ``variants``
            per scenario (per round for "cem"), ``seed``, ``sampler_options``. Parameter
            spaces: ``{uniform = [3.0, 8.0], unit = "m/s2"}``, ``{normal = [1.0, 0.2], low =
            0.5, high = 1.5}``, ``{choice = [...]}``, ``{grid = [...]}`` or a plain value.
        name: the sweep's label in reports (default: the operator chain).
        rounds: adaptive samplers only: propose, run and learn this many times.
        objective: adaptive samplers only: what they drive down, a numeric summary column
            (``"closed_loop_score"``) or a weighted sum of columns (``{closed_loop_score = 1.0,
            min_ttc_s = 0.1}``), ranked after severity (``harness.search``).
    """

    table: Mapping[str, Any]
    name: str = ""
    rounds: int = 4
    objective: str | Mapping[str, float] = "closed_loop_score"

    def __post_init__(self) -> None:
        if not 1 <= self.rounds <= MAX_ROUNDS:
            raise _invalid("mutations.rounds", f"must be an integer in [1, {MAX_ROUNDS}], got {self.rounds}")
        variants = self.plan().variants
        if variants > MAX_VARIANTS:
            raise _invalid("mutations.variants", f"must be an integer in [1, {MAX_VARIANTS}] (per scenario), got {variants}")
        if self.adaptive:
            self.parsed_objective()

    def plan(self, source: str = MEMORY) -> Any:
        """The validated ``MutationPlan``; ``ConfigError`` names the file and the key."""
        from scenarios.mutations import MutationError, MutationPlan

        try:
            return MutationPlan.from_table(dict(self.table), source)
        except MutationError as exc:
            raise ConfigError(source, f"mutations.{exc.field}".replace("mutations.mutation", "mutations"), exc.problem) from None

    def parsed_objective(self, source: str = MEMORY) -> Any:
        """The ``harness.search.Objective``; ``ConfigError`` names the key (and the bad column)."""
        from harness.search import Objective

        return Objective.parse(dict(self.objective) if isinstance(self.objective, Mapping) else self.objective, objective_columns(), source)

    @property
    def adaptive(self) -> bool:
        return str(self.table.get("sampler", "random")) in ADAPTIVE_SAMPLERS

    def label(self, index: int) -> str:
        if self.name:
            return self.name
        chain = self.table.get("chain") or [self.table]
        return "+".join(str(item.get("operator", "?")) for item in chain) + f"#{index}"

    def variants_per_round(self, source: str = MEMORY) -> int:
        return int(self.plan(source).variants)


@dataclass(frozen=True, slots=True)
class GateConfig:
    """What a run must achieve to pass ``drivetwin gate``.

    Attributes:
        min_mean_closed_loop_score: the mean nuPlan-style score over ok variants.
        min_mean_driving_score: the mean CARLA-style driving score.
        max_at_fault_collision_rate: share of variants with an at-fault collision.
        max_error_rate: share of variants whose run failed (policy crash, timeout, ...).
        min_variant_score: every variant's closed-loop score must reach this (0: no per-variant bar).
        max_score_drop: against a baseline, the largest tolerated drop of the mean closed-loop score.
        confidence: the bootstrap confidence for "significant" regressions (e.g. 0.95).
        max_new_failures: against a baseline, how many variants may fail that passed there.
    """

    min_mean_closed_loop_score: float = 0.0
    min_mean_driving_score: float = 0.0
    max_at_fault_collision_rate: float = 1.0
    max_error_rate: float = 0.0
    min_variant_score: float = 0.0
    max_score_drop: float = 0.05
    confidence: float = 0.95
    max_new_failures: int = 0

    @property
    def score_floor(self) -> float | None:
        """``min_variant_score`` as ``verdict_failures`` takes it: None when there is no per-variant bar."""
        return self.min_variant_score if self.min_variant_score > 0 else None

    def __post_init__(self) -> None:
        if self.max_new_failures < 0:
            raise _invalid("gate.max_new_failures", f"must not be negative, got {self.max_new_failures}")
        for f in dataclasses.fields(self):
            if f.name == "max_new_failures":
                continue
            value = getattr(self, f.name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise _invalid(f"gate.{f.name}", f"must be in [0, 1], got {value}")


def host_port(address: str) -> tuple[str, int] | None:
    """``("host", port)`` of ``"host:port"`` (also ``ray://host:port`` and ``[::1]:port``); None
    when ``address`` has no host or no numeric port."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


#: Planner addresses of the lock-step frames transport (``harness.remote.frames``).
FRAMES_SCHEMES = ("unix+frames://", "tcp+frames://")


def planner_address_problem(address: str) -> str:
    """What is wrong with a ``[policy] address`` ("" : nothing): ``"host:port"`` (gRPC),
    ``"unix+frames:///abs/path"`` or ``"tcp+frames://host:port"``."""
    if address.startswith(FRAMES_SCHEMES[0]):
        path = address[len(FRAMES_SCHEMES[0]):]
        if not path.startswith("/"):
            return f"{address!r}: a unix+frames address needs an absolute path (unix+frames:///run/planner.sock)"
        return f"{address!r}: the socket path is longer than 107 bytes" if len(path.encode()) > 107 else ""
    if address.startswith(FRAMES_SCHEMES[1]):
        hp = host_port(address[len(FRAMES_SCHEMES[1]):])
        return "" if hp is not None and hp[1] <= 65535 else f"{address!r}: a tcp+frames address is tcp+frames://host:port"
    if address.startswith("ray://") or host_port(address) is None:
        return f"{address!r} is not \"host:port\" (gRPC), \"unix+frames:///path\" or \"tcp+frames://host:port\""
    return ""


def _is_ray_address(address: str) -> bool:
    return address == "auto" or host_port(address) is not None


def check_suite_name(name: object, source: str = MEMORY) -> None:
    """A suite's name is a plain file name: its runs go to ``runs/<name>-<time>`` and nowhere else."""
    if not isinstance(name, str) or not name:
        raise ConfigError(source, "suite.name", f"must be a non-empty string, got {name!r}")
    if any(c in name for c in "/\\\0") or name.startswith(".") or Path(name).name != name:
        raise ConfigError(
            source, "suite.name",
            f"must be a plain file name (no path separators, not starting with '.'): runs go to runs/<name>-<time>; got {name!r}",
        )


@dataclass(frozen=True, slots=True)
class RunConfig:
    """How to run.

    Attributes:
        seed: the root of every random choice in the run.
        workers: parallel workers (0: one per core; at most ``MAX_WORKERS``).
        executor: a name in ``harness.executor.EXECUTORS``: "ray" (default), "sequential"
            (debugging), or one a plug-in registers.
        address: a Ray cluster to join ("" starts a local one).
        timeout_s: the longest one variant may run [s].
        retries: how often a variant whose worker died is tried again.
        chunk_size: variants per task (0: chosen from the number of variants and workers).
        save_steps: also write the per-step dataset.
        include_original: run each scenario unmutated too.
        max_variants_per_worker: replace a worker after it ran this many variants (0: never),
            e.g. for a policy that leaks memory. Results do not change.
        max_worker_memory_mb: replace a Ray worker whose resident memory exceeds this after a
            chunk [MB] (0: no ceiling). The sequential executor cannot: it has one process.
        startup_timeout_s: the longest a Ray worker may take to start (build its twin, policy
            and plug-ins) once it has its CPU [s]; one that overruns is replaced, and the run
            stops with an error after ``retries + 1`` such hangs.
    """

    seed: int = 0
    workers: int = 0
    executor: str = "ray"
    address: str = ""
    timeout_s: float = 300.0
    retries: int = 1
    chunk_size: int = 0
    save_steps: bool = False
    include_original: bool = True
    max_variants_per_worker: int = 0
    max_worker_memory_mb: float = 0.0
    startup_timeout_s: float = RayExecutor.STARTUP_TIMEOUT_S

    def __post_init__(self) -> None:
        from harness.executor import EXECUTORS

        if self.executor not in EXECUTORS:
            raise _invalid("run.executor", f"unknown executor {self.executor!r}; known: {EXECUTORS.names()}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise _invalid("run.workers", f"must be an integer in [0, {MAX_WORKERS}] (0: one per core), got {self.workers}")
        if self.retries < 0 or self.chunk_size < 0:
            raise _invalid("run", "retries and chunk_size must not be negative")
        if self.max_variants_per_worker < 0:
            raise _invalid("run.max_variants_per_worker", f"must be 0 (never) or a positive integer, got {self.max_variants_per_worker}")
        if not (math.isfinite(self.max_worker_memory_mb) and self.max_worker_memory_mb >= 0):
            raise _invalid("run.max_worker_memory_mb", f"must be 0 (no ceiling) or a positive number of MB, got {self.max_worker_memory_mb}")
        if self.address and not _is_ray_address(self.address):
            raise _invalid("run.address", f"must be \"host:port\", \"ray://host:port\" or \"auto\", got {self.address!r}")
        for key in ("timeout_s", "startup_timeout_s"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise _invalid(f"run.{key}", f"must be a positive number of seconds, got {value}")


@dataclass(frozen=True, slots=True)
class SuiteConfig:
    """A whole suite. ``env`` and ``evaluators`` are checked by the twin's and the evaluators' own configs.

    Attributes:
        plugins: modules imported (on the driver and on every worker) before anything else is
            read, so that the metrics, operators, policies, dynamics models, importers and
            executors they register can be named by the suite.
    """

    name: str
    description: str = ""
    plugins: tuple[str, ...] = ()
    scenarios: ScenariosConfig = ScenariosConfig()
    policy: PolicyConfig = PolicyConfig()
    env: Mapping[str, Any] = field(default_factory=dict)
    mutations: tuple[MutationConfig, ...] = ()
    evaluators: Mapping[str, Any] = field(default_factory=dict)
    gate: GateConfig = GateConfig()
    run: RunConfig = RunConfig()
    source: str = MEMORY

    def __post_init__(self) -> None:
        check_suite_name(self.name, self.source)
        bad = [p for p in self.plugins if not (isinstance(p, str) and p)]
        if bad:
            raise ConfigError(self.source, "suite.plugins", f"must be module names, got {bad[0]!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (enums as their values), for the run manifest."""
        return plain(self)

    def replace(self, **changes: Any) -> SuiteConfig:
        return dataclasses.replace(self, **changes)


_SECTIONS = {"suite", "scenarios", "policy", "env", "mutations", "evaluators", "gate", "run"}
_SUITE_KEYS = ("description", "name", "plugins")


def _coerce(value: Any, hint: Any, src: str, key: str) -> Any:
    """``value`` as type ``hint``, or ConfigError naming ``key``."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return _enum(hint, value, key)
        except ConfigError as exc:
            raise ConfigError(src, exc.key, exc.problem) from None
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(src, key, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(src, key, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(src, key, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(src, key, f"must be a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(src, key, f"must be a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(value if item is Any else [_coerce(v, item, src, f"{key}[{i}]") for i, v in enumerate(value)])
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, dict):
            raise ConfigError(src, key, f"must be a table, got {value!r}")
        return types.MappingProxyType(dict(value))
    return value


def _build(cls: type, table: Any, src: str, prefix: str) -> Any:
    """``cls`` from a TOML table: values type-checked, unknown keys and invalid values named with ``src``."""
    if not isinstance(table, dict):
        raise ConfigError(src, prefix, f"must be a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    typed = {k: _coerce(v, hints[k], src, f"{prefix}.{k}") if k in hints and k != "source" else v for k, v in table.items()}
    try:
        return dataclass_from_mapping(cls, typed, src, ConfigError, prefix=prefix, skip=frozenset({"source"}))
    except ConfigError as exc:
        if exc.source != MEMORY:
            raise
        raise ConfigError(src, exc.key, exc.problem) from None


def _policy(table: Any, src: str) -> PolicyConfig:
    policy = _build(PolicyConfig, table, src, "policy")
    if policy.remote and "name" not in table:
        policy = dataclasses.replace(policy, name="")  # the rows record the planner's own name
    return policy


def parse_suite(data: Mapping[str, Any], source: str = MEMORY) -> SuiteConfig:
    """A ``SuiteConfig`` from already-parsed TOML data.

    The ``[suite] plugins`` (and installed ``drivetwin.plugins`` entry points) are imported first,
    so every later table may name what they register.
    """
    from harness.plugins import load_plugins

    unknown = sorted(set(data) - _SECTIONS)
    if unknown:
        raise ConfigError(source, unknown[0], f"unknown section (known: {', '.join(sorted(_SECTIONS))})")
    suite = data.get("suite", {})
    if not isinstance(suite, dict) or set(suite) - set(_SUITE_KEYS):
        bad = sorted(set(suite) - set(_SUITE_KEYS)) if isinstance(suite, dict) else ["suite"]
        raise ConfigError(source, f"suite.{bad[0]}", f"unknown key (known: {', '.join(_SUITE_KEYS)})")
    plugins = _coerce(suite.get("plugins", []), tuple[str, ...], source, "suite.plugins")
    load_plugins(plugins, source)
    name = _coerce(suite.get("name", Path(source).stem), str, source, "suite.name")
    mutations = data.get("mutations", [])
    if not isinstance(mutations, list):
        raise ConfigError(source, "mutations", "must be an array of tables ([[mutations]])")
    sweeps = []
    for i, table in enumerate(mutations):
        if not isinstance(table, dict):
            raise ConfigError(source, f"mutations[{i}]", "must be a table")
        own = {k: table[k] for k in HARNESS_MUTATION_KEYS if k in table}
        plan_table = {k: v for k, v in table.items() if k not in HARNESS_MUTATION_KEYS}
        sweeps.append(_build(MutationConfig, {"table": plan_table, **own}, source, f"mutations[{i}]"))
    return SuiteConfig(
        name=name,
        description=_coerce(suite.get("description", ""), str, source, "suite.description"),
        plugins=plugins,
        scenarios=_build(ScenariosConfig, data.get("scenarios", {}), source, "scenarios"),
        policy=_policy(data.get("policy", {}), source),
        env=_coerce(data.get("env", {}), Mapping, source, "env"),
        mutations=tuple(sweeps),
        evaluators=_coerce(data.get("evaluators", {}), Mapping, source, "evaluators"),
        gate=_build(GateConfig, data.get("gate", {}), source, "gate"),
        run=_build(RunConfig, data.get("run", {}), source, "run"),
        source=source,
    )


def check_sections(config: SuiteConfig) -> SuiteConfig:
    """Validate the tables owned by other packages (``[env]``, ``[evaluators]``, the policy name) now,
    so a bad key stops the run before it starts instead of failing every variant."""
    import sim
    from evaluators import EvaluatorConfig, EvaluatorError
    from sim.policies import policy_names

    src = config.source
    try:
        sim.EnvConfig.from_mapping(dict(config.env), "[env]")
    except (sim.ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(src, "env", str(exc)) from None
    try:
        EvaluatorConfig.from_mapping(dict(config.evaluators), "[evaluators]")
    except EvaluatorError as exc:
        raise ConfigError(src, f"evaluators.{exc.field}", exc.problem) from None
    name = config.policy.name
    if not config.policy.remote and ":" not in name and name not in policy_names():
        raise ConfigError(src, "policy.name", f"unknown policy {name!r}; built-in: {policy_names()}, or 'package.module:Name'")
    return config


def load_suite(path: str | Path) -> SuiteConfig:
    """Read and validate a suite TOML file; ``ConfigError`` names the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    return check_sections(parse_suite(data, str(path)))
