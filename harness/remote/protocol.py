"""The planner protocol v1 in Python: messages from the twin's state, and the twin's state back.

The client side (``harness.remote.client``) turns a policy context and each observation into
``ScenarioInit`` and ``Observation`` messages and checks every reply; the server side
(``harness.remote.server``) turns them back into what a Python policy's ``reset`` and ``act``
get in process. Both directions carry float64 state and float32 actions unchanged, so a policy
served over the wire computes bit for bit what it computes in process.

Every access to the policy context and its view goes through ``episode_facts`` (one place to
adapt when the context's type changes).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.remote._proto import planner_pb2 as pb
from scenarios.common import LRU

PROTOCOL_VERSION = 1
#: Map elements within this distance of the route are sent in ``ScenarioInit`` [m].
MAP_RADIUS_M = 60.0
#: Route points kept for the map's distance test (every this many of the 0.5 m route points).
_ROUTE_STRIDE = 10

ACTION_TYPES = {"continuous": pb.ACTION_TYPE_CONTINUOUS, "trajectory": pb.ACTION_TYPE_TRAJECTORY, "discrete": pb.ACTION_TYPE_DISCRETE}
ACTION_NAMES = {v: k for k, v in ACTION_TYPES.items()}
STATUS_NAMES = {pb.STATUS_UNSPECIFIED: "STATUS_UNSPECIFIED", pb.STATUS_OK: "STATUS_OK", pb.STATUS_ERROR: "STATUS_ERROR"}


class RemoteError(RuntimeError):
    """The remote planner broke the protocol or reported an error (fails the variant)."""


class PlannerLost(RemoteError):
    """The planner cannot be reached, died or did not answer in time (the variant is retried)."""


@dataclass(frozen=True, slots=True)
class EpisodeFacts:
    """What the client reads from a policy context (``reset``'s argument), in one place.

    Attributes:
        scenario: the episode's ``Scenario``.
        dt_s: env step [s]; ``dt_us`` the same [us].
        t0_us: scenario time of the episode's first step [us].
        origin: (2,) local frame = scenario frame - origin [m].
        action_type: "continuous", "trajectory" or "discrete".
        action_space: the env's action space.
        config: the env's ``EnvConfig``.
        vehicle: the ego's ``VehicleParams``.
        speed_limit: [m/s] (NaN when unknown).
        view: the privileged view (``ego``, ``agents()``, ``route``, ``route_s``, ``step_index``,
            ``logged_ego``).
        seed: the episode's seed (0 when the context has none).
    """

    scenario: Any
    dt_s: float
    dt_us: int
    t0_us: int
    origin: np.ndarray
    action_type: str
    action_space: Any
    config: Any
    vehicle: Any
    speed_limit: float
    view: Any
    seed: int = 0


def episode_facts(ctx: Mapping[str, Any]) -> EpisodeFacts:
    """The facts of a policy context (``sim.context.PolicyContext``, or the former dict: read by key)."""
    scenario = ctx["scenario"]
    tracks, e = scenario.tracks, scenario.ego_index
    start = int(np.flatnonzero(tracks.valid[e])[0])
    dt_s = float(ctx["dt_s"])
    action_type = ctx["action_type"]
    try:
        seed = int(ctx["seed"] or 0)
    except KeyError:  # the former dict had no seed
        seed = 0
    return EpisodeFacts(
        scenario=scenario,
        dt_s=dt_s,
        dt_us=int(round(dt_s * 1e6)),
        t0_us=int(scenario.t_us[start]),
        origin=np.array([tracks.x[e, start], tracks.y[e, start]], dtype=np.float64),
        action_type=str(getattr(action_type, "value", action_type)),
        action_space=ctx["action_space"],
        config=ctx["config"],
        vehicle=ctx["vehicle"],
        speed_limit=float(ctx["speed_limit"]),
        view=ctx["view"],
        seed=seed,
    )


# --- client side: messages from the twin ------------------------------------------------------


def _polyline(points: np.ndarray | None, origin: np.ndarray | None = None) -> pb.Polyline:
    if points is None or len(points) == 0:
        return pb.Polyline()
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    if origin is not None:
        xy = xy - origin
    return pb.Polyline(xy=xy.ravel().tolist())


def _near(points: np.ndarray, anchors: np.ndarray, radius: float) -> bool:
    """Whether any of ``points`` (P, 2) lies within ``radius`` of any of ``anchors`` (A, 2)."""
    if len(points) == 0:
        return False
    lo, hi = anchors.min(axis=0) - radius, anchors.max(axis=0) + radius
    inside = points[np.all((points >= lo) & (points <= hi), axis=1)]
    if len(inside) == 0:
        return False
    d2 = ((inside[:, None, :] - anchors[None, :, :]) ** 2).sum(axis=2)
    return bool(d2.min() <= radius * radius)


def map_near_route(scenario: Any, origin: np.ndarray, route_xy: np.ndarray, radius: float = MAP_RADIUS_M) -> tuple[list, list]:
    """Lanes and map features (``pb.Lane``, ``pb.MapFeature``, local frame) within ``radius`` [m] of the route."""
    anchors = np.asarray(route_xy, dtype=np.float64)[::_ROUTE_STRIDE] + origin
    if len(anchors) == 0:
        anchors = origin[None, :]
    lanes, features = [], []
    for lane in scenario.road_map.lanes:
        if not _near(np.asarray(lane.centerline)[:, :2], anchors, radius):
            continue
        lanes.append(pb.Lane(
            id=str(lane.id), centerline=_polyline(lane.centerline, origin),
            left_boundary=_polyline(lane.left_boundary, origin), right_boundary=_polyline(lane.right_boundary, origin),
            speed_limit=float(lane.speed_limit), lane_type=str(lane.lane_type),
            predecessors=list(lane.predecessors), successors=list(lane.successors),
            left_neighbors=list(lane.left_neighbors), right_neighbors=list(lane.right_neighbors),
        ))
    for feature in scenario.road_map.features:
        if not _near(np.asarray(feature.points)[:, :2], anchors, radius):
            continue
        features.append(pb.MapFeature(
            id=str(feature.id), kind=int(feature.kind), points=_polyline(feature.points, origin),
            subtype=str(feature.subtype), lane_ids=list(feature.lane_ids),
        ))
    return lanes, features


def action_spec(action_type: str, space: Any) -> pb.ActionSpec:
    """The ``ActionSpec`` of a Gymnasium action space (a ``Box`` or a ``Discrete``)."""
    spec = pb.ActionSpec(type=ACTION_TYPES[action_type])
    if action_type == "discrete":
        spec.num_choices = int(space.n)
    else:
        spec.shape.extend(int(n) for n in space.shape)
        spec.low.extend(np.asarray(space.low, np.float32).ravel().tolist())
        spec.high.extend(np.asarray(space.high, np.float32).ravel().tolist())
    return spec


def scenario_init(facts: EpisodeFacts, session: str, seed: int, map_cache: LRU | None = None) -> pb.ScenarioInit:
    """The ``ScenarioInit`` of an episode; ``map_cache`` keeps the map near the route per scenario and route."""
    from sim.observations import AGENT_FEATURES, EGO_FEATURES

    scenario, view, params, config = facts.scenario, facts.view, facts.vehicle, facts.config
    route_xy = np.asarray(view.route.xy, dtype=np.float64)
    key = (str(scenario.id), facts.origin.tobytes(), hashlib.blake2b(route_xy.tobytes(), digest_size=16).digest())
    def near() -> tuple[list, list]:
        return map_near_route(scenario, facts.origin, route_xy)

    lanes, features = map_cache.get_or_make(key, near) if map_cache is not None else near()
    signals = scenario.signals
    init = pb.ScenarioInit(
        protocol_version=PROTOCOL_VERSION, session=session, scenario_id=str(scenario.id), ego_id=str(scenario.ego_id),
        t_us=facts.t0_us, dt_us=facts.dt_us, dt_s=facts.dt_s,
        action=action_spec(facts.action_type, facts.action_space),
        vehicle=pb.VehicleParams(
            length=params.length, width=params.width, height=params.height, wheelbase=params.wheelbase,
            max_accel=params.max_accel, max_decel=params.max_decel, max_steer=params.max_steer,
            max_steer_rate=params.max_steer_rate, mass=params.mass,
        ),
        speed_limit=facts.speed_limit, origin_x=float(facts.origin[0]), origin_y=float(facts.origin[1]),
        route=pb.Polyline(xy=route_xy.ravel().tolist()), lanes=lanes, features=features,
        logged_ego=np.asarray(view.logged_ego, dtype=np.float64).ravel().tolist(),
        agent_ids=[str(a) for a in scenario.tracks.agent_ids],
        agent_types=[int(t) for t in scenario.tracks.agent_types],
        signal_lane_ids=[str(i) for i in signals.lane_ids] if signals is not None else [],
        seed=int(seed) & 0xFFFFFFFFFFFFFFFF,
        env_config_json=json.dumps(config.to_dict(), sort_keys=True, default=str),
    )
    if config.has("state"):
        init.state_layout.CopyFrom(pb.StateLayout(
            ego_features=list(EGO_FEATURES), agent_features=list(AGENT_FEATURES),
            num_agents=int(config.num_agents_obs), num_route_points=int(config.route_points),
        ))
    return init


def signal_states(scenario: Any, t_us: int) -> list[int]:
    """Every signal's state at scenario time ``t_us`` (the last logged state at or before it)."""
    signals = scenario.signals
    if signals is None or len(signals.lane_ids) == 0:
        return []
    k = int(np.searchsorted(scenario.t_us, t_us, side="right")) - 1
    k = min(max(k, 0), signals.states.shape[1] - 1)
    return [int(s) for s in signals.states[:, k]]


_ROAD_USER_FIELDS = ("x", "y", "yaw", "vx", "vy", "length", "width")
#: The protobuf field numbers of ``RoadUsers``' double arrays and of ``Observation.state``.
_ROAD_USER_NUMBERS = {key: pb.RoadUsers.DESCRIPTOR.fields_by_name[key].number for key in _ROAD_USER_FIELDS}
_STATE_NUMBER = pb.Observation.DESCRIPTOR.fields_by_name["state"].number


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _packed(number: int, data: bytes) -> bytes:
    """A packed repeated field on the wire (tag, length, the values' little-endian bytes): parsed
    into a message, it is what ``extend`` would give, without a Python float per value."""
    return _varint((number << 3) | 2) + _varint(len(data)) + data if data else b""


#: The wire tags of ``RoadUsers``' double arrays (packed: wire type 2), in ``_ROAD_USER_FIELDS`` order.
_ROAD_USER_TAGS = [_varint((_ROAD_USER_NUMBERS[key] << 3) | 2) for key in _ROAD_USER_FIELDS]


def _road_user_arrays(agents: Mapping[str, np.ndarray]) -> bytes:
    """``RoadUsers``' seven double arrays on the wire, from one (7, N) copy of ``agents``' columns."""
    n = len(agents["x"])
    if n == 0:
        return b""
    block = np.empty((len(_ROAD_USER_FIELDS), n), dtype="<f8")
    for i, key in enumerate(_ROAD_USER_FIELDS):
        block[i] = agents[key]
    length = _varint(8 * n)
    parts: list[Any] = []
    for tag, row in zip(_ROAD_USER_TAGS, block):  # each row's bytes as a view: no copy until the join
        parts += (tag, length, row.data)
    return b"".join(parts)


def _read_varint(data: bytearray, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def packed_arrays(message: Any, numbers: Mapping[str, int], dtype: str = "<f8") -> dict[str, np.ndarray] | None:
    """The repeated fixed-size fields ``numbers`` (name: field number) of ``message`` as arrays of
    ``dtype`` ("<f8": double, "<f4": float), read from its wire form in one copy (not a Python
    float per value, as iterating the field is); None when a field is not packed there (the
    caller then reads the fields)."""
    data = bytearray(message.SerializeToString())
    wanted = set(numbers.values())
    spans: dict[int, tuple[int, int]] = {}
    i, end = 0, len(data)
    try:
        while i < end:
            key, i = _read_varint(data, i)
            number, wire = key >> 3, key & 7
            if wire == 2:
                size, i = _read_varint(data, i)
                if number in wanted and number in spans:
                    return None  # a field in two pieces
                spans[number] = (i, size)
                i += size
            elif wire == 0:
                _, i = _read_varint(data, i)
            elif wire in (1, 5):
                if number in wanted:
                    return None  # an unpacked repeated field
                i += 8 if wire == 1 else 4
            else:
                return None
    except IndexError:
        return None
    width = np.dtype(dtype).itemsize
    out = {}
    for name, number in numbers.items():
        offset, size = spans.get(number, (0, 0))
        if size % width:
            return None
        out[name] = np.frombuffer(data, dtype=dtype, count=size // width, offset=offset)
    return out


def observation(facts: EpisodeFacts, session: str, obs: Mapping[str, Any], msg: Any = None) -> pb.Observation:
    """The ``Observation`` message of the env's current step (``obs`` is what the env returned),
    filled into ``msg`` (an empty ``Observation``, e.g. a ``SessionRequest``'s) when given."""
    view = facts.view
    k = int(view.step_index)
    t_us = facts.t0_us + k * facts.dt_us
    ego = view.ego
    agents = view.agents()
    if msg is None:
        msg = pb.Observation()
    msg.session, msg.t_us, msg.step, msg.route_s = session, t_us, k, float(view.route_s)
    e = msg.ego
    e.x, e.y, e.yaw, e.speed, e.yaw_rate, e.accel, e.steer = ego.x, ego.y, ego.yaw, ego.speed, ego.yaw_rate, ego.accel, ego.steer
    users = msg.agents
    users.MergeFromString(_road_user_arrays(agents))
    users.index.extend(agents["row"].tolist())
    if facts.scenario.signals is not None:
        msg.signal_states.extend(signal_states(facts.scenario, t_us))
    for name, value in obs.items():
        if name == "state":
            msg.MergeFromString(_packed(_STATE_NUMBER, np.ascontiguousarray(value, dtype="<f4").tobytes()))
        else:
            array = np.ascontiguousarray(value)
            msg.parts.append(pb.Tensor(name=name, dtype=array.dtype.name, shape=list(array.shape), data=array.tobytes()))
    return msg


def check_reply(reply: Any, t_us: int, what: str) -> None:
    """Raise ``RemoteError`` unless ``reply`` is STATUS_OK and answers time ``t_us`` [us]."""
    if reply.status != pb.STATUS_OK:
        status = STATUS_NAMES.get(reply.status, str(reply.status))
        detail = f": {reply.message}" if reply.message else ""
        raise RemoteError(f"{what}: the planner replied {status}{detail}")
    if reply.t_us != t_us:
        raise RemoteError(f"{what}: the planner replied for t_us={reply.t_us}, the twin asked for t_us={t_us}")


def decode_command(command: Any, action_type: str, space: Any, what: str) -> Any:
    """The env action in ``command``; ``RemoteError`` when it is not of the declared type and shape."""
    case = command.WhichOneof("action")  # the oneof's cases are named after the action types
    if case != action_type:
        raise RemoteError(f"{what}: malformed command: a {action_type} action was declared, the planner sent {case or 'no action'}")
    if action_type == "continuous":
        accel, steer = command.continuous.accel, command.continuous.steer
        if not (math.isfinite(accel) and math.isfinite(steer)):  # two floats: no numpy reduction per step
            raise RemoteError(f"{what}: malformed command: non-finite values in the {action_type} action")
        return np.array([accel, steer], dtype=np.float32)
    if action_type == "trajectory":
        xy = np.asarray(command.trajectory.xy, dtype=np.float32)
        if xy.size != int(np.prod(space.shape)):
            raise RemoteError(f"{what}: malformed command: {xy.size} trajectory values, the action space needs {int(np.prod(space.shape))} ({tuple(space.shape)})")
        action = xy.reshape(space.shape)
    else:
        choice = int(command.discrete.choice)
        if choice >= int(space.n):
            raise RemoteError(f"{what}: malformed command: discrete choice {choice} of {int(space.n)}")
        return choice
    if not np.isfinite(action).all():
        raise RemoteError(f"{what}: malformed command: non-finite values in the {action_type} action")
    return action


def encode_action(action: Any, action_type: str, t_us: int) -> pb.Command:
    """A STATUS_OK ``Command`` carrying a Python policy's ``action`` for time ``t_us``."""
    command = pb.Command(status=pb.STATUS_OK, t_us=t_us)
    if action_type == "continuous":
        a = np.asarray(action, dtype=np.float32).ravel()
        if a.size != 2:
            raise ValueError(f"a continuous action has 2 values, got {a.size}")
        command.continuous.accel, command.continuous.steer = float(a[0]), float(a[1])
    elif action_type == "trajectory":
        command.trajectory.xy.extend(np.asarray(action, dtype=np.float32).ravel().tolist())
    else:
        command.discrete.choice = int(action)
    return command


# --- server side: the twin's state from messages ---------------------------------------------


def _xy(polyline: Any) -> np.ndarray:
    read = packed_arrays(polyline, _POLYLINE_XY)
    return (read["xy"] if read is not None else np.asarray(polyline.xy, dtype=np.float64)).reshape(-1, 2)


_POLYLINE_XY = {"xy": pb.Polyline.DESCRIPTOR.fields_by_name["xy"].number}


class ServedView:
    """The privileged view a served policy reads, rebuilt from the messages (same names as in process)."""

    def __init__(self, init: Any) -> None:
        from sim.road import Polyline

        self._route = Polyline(_xy(init.route))
        self._logged_ego = np.asarray(init.logged_ego, dtype=np.float64).reshape(-1, 4)
        self._params = vehicle_params(init.vehicle)
        self._types = np.asarray(init.agent_types, dtype=np.int8)
        self._ego: Any = None
        self._step = 0
        self._route_s = 0.0
        self._obs: Any = None
        self._agents: dict[str, np.ndarray] | None = None

    def update(self, obs: Any) -> None:
        """Take the state of one ``Observation`` (the road users are unpacked when first asked for)."""
        from sim.dynamics.base import EgoState

        e = obs.ego
        self._ego = EgoState(e.x, e.y, e.yaw, e.speed, e.yaw_rate, e.accel, e.steer)
        self._step = int(obs.step)
        self._route_s = float(obs.route_s)
        self._obs, self._agents = obs, None

    @property
    def step_index(self) -> int:
        return self._step

    @property
    def ego(self) -> Any:
        return self._ego

    @property
    def logged_ego(self) -> np.ndarray:
        return self._logged_ego

    @property
    def route(self) -> Any:
        return self._route

    @property
    def route_s(self) -> float:
        return self._route_s

    @property
    def params(self) -> Any:
        return self._params

    def agents(self) -> dict[str, np.ndarray]:
        """Present other road users now: x, y, yaw, vx, vy, length, width, type, row (as in process)."""
        if self._agents is None:
            a = self._obs.agents
            rows = np.array(a.index, dtype=np.int64)
            arrays = packed_arrays(a, _ROAD_USER_NUMBERS)
            if arrays is None:
                arrays = {key: np.array(getattr(a, key), np.float64) for key in _ROAD_USER_FIELDS}
            if any(len(v) != len(rows) for v in arrays.values()):
                raise ValueError(f"Observation.agents: {len(rows)} index entries but arrays of {sorted({len(v) for v in arrays.values()})} values")
            self._agents = {**arrays, "type": self._types[rows], "row": rows}
        return self._agents


def vehicle_params(msg: Any) -> Any:
    from sim.dynamics.base import VehicleParams

    return VehicleParams(
        length=msg.length, width=msg.width, height=msg.height, wheelbase=msg.wheelbase, max_accel=msg.max_accel,
        max_decel=msg.max_decel, max_steer=msg.max_steer, max_steer_rate=msg.max_steer_rate, mass=msg.mass,
    )


def action_space(spec: Any) -> Any:
    """The Gymnasium space of an ``ActionSpec``."""
    from gymnasium import spaces

    if spec.type == pb.ACTION_TYPE_DISCRETE:
        return spaces.Discrete(int(spec.num_choices))
    shape = tuple(int(n) for n in spec.shape)
    low = np.asarray(spec.low, np.float32).reshape(shape)
    high = np.asarray(spec.high, np.float32).reshape(shape)
    return spaces.Box(low, high, shape, np.float32)


@dataclass(frozen=True, slots=True)
class ServedSpaces:
    """What a ``ScenarioInit`` says of the env itself: its config, action type and spaces.

    A served session keeps them while its episodes' ``env_config_json`` and action spec stay the
    same, so its policy gets the same objects every episode, as in process (where they are the
    env's), and they are not rebuilt per episode.
    """

    key: tuple[str, bytes]
    config: Any
    action_type: Any
    action_space: Any
    observation_space: Any


def served_spaces(init: Any, previous: ServedSpaces | None = None) -> ServedSpaces:
    """The env's config and spaces in ``init``: ``previous`` when they are the same."""
    from sim.config import ActionType, EnvConfig
    from sim.observations import observation_space

    key = (init.env_config_json, init.action.SerializeToString(deterministic=True))
    if previous is not None and previous.key == key:
        return previous
    table = json.loads(init.env_config_json) if init.env_config_json else {}
    config = EnvConfig.from_mapping(table, "ScenarioInit.env_config_json")
    action_type = ActionType(ACTION_NAMES.get(init.action.type, "continuous"))
    return ServedSpaces(key, config, action_type, action_space(init.action), observation_space(config))


def served_context(init: Any, view: ServedView, spaces: ServedSpaces | None = None) -> Any:
    """The ``sim.context.PolicyContext`` a Python policy's ``reset`` gets in process, rebuilt from a
    ``ScenarioInit`` (``scenario`` is None: its map, route and road users cross the wire, not it);
    ``spaces`` from ``served_spaces`` (made here when not given)."""
    from sim.context import PolicyContext

    spaces = spaces if spaces is not None else served_spaces(init)
    return PolicyContext(
        scenario=None,
        scenario_id=init.scenario_id,
        ego_id=init.ego_id,
        dt_s=init.dt_s,
        config=spaces.config,
        action_type=spaces.action_type,
        action_space=spaces.action_space,
        observation_space=spaces.observation_space,
        vehicle=view.params,
        speed_limit=init.speed_limit,
        view=view,
        seed=int(init.seed),
    )


def served_observation(obs: Any) -> dict[str, np.ndarray]:
    """The env observation in an ``Observation`` message, as the env returned it."""
    out: dict[str, np.ndarray] = {}
    if len(obs.state):  # (a few hundred floats: reading them one by one is cheaper than the wire form of the whole message)
        out["state"] = np.asarray(obs.state, dtype=np.float32)
    for part in obs.parts:
        out[part.name] = np.frombuffer(part.data, dtype=np.dtype(part.dtype)).reshape(tuple(part.shape)).copy()
    return out
