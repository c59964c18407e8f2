"""Map 55-d expression frames to position commands for the actuators of a robot face.

Each actuator ``i`` is driven by a linear map of the expression vector ``x``
(:data:`face_expr_ros.expression.EXPRESSION_NAMES`), followed by a safety chain::

    target_i = offset_i + sum_c w_ic * x_c                    (linear retargeting)
    target_i = clip(target_i, min_i, max_i)                   (position limits)
    y_i     += (1 - exp(-dt / tau_i)) * (target_i - y_i)      (first-order low-pass, tau_i >= 0)
    y_i     += clip(step_i, -v_i * dt', +v_i * dt')           (velocity limit, dt' = min(dt, max_dt))
    y_i      = clip(y_i, min_i, max_i)                        (guards float rounding)

The low-pass is the exact zero-order-hold discretisation of ``tau * dy/dt + y = target``,
so it behaves the same at any control rate. The velocity limit follows it, which makes the
bound ``|y_k - y_{k-1}| <= v * dt`` hold whatever the filter or the input does.

Inputs are sanitised before the linear map: a non-finite channel holds its last finite
value (a tracker that loses one landmark should not snap the face to neutral for a frame),
finite values are clipped to the channel's range by :func:`expression.clamp`, and a frame of
the wrong length or type is rejected as a whole (the command holds). A ``dt`` that is zero,
negative or not finite also holds the command; a very large ``dt`` (a stalled loop) is capped
at ``max_dt`` so the face does not leap after a pause.

The module has no ROS dependency: a node turns :meth:`RobotFaceMap.step` into a
``std_msgs/Float64MultiArray`` (``data`` in :attr:`RobotFaceMap.joint_names` order, as the
ros2_control forward position controller expects) or a ``trajectory_msgs/JointTrajectory``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import ArrayLike, NDArray

from face_expr_ros import expression
from face_expr_ros.config import ConfigError

TOP_KEYS: frozenset[str] = frozenset({"name", "description", "units", "max_dt", "actuators"})
ACTUATOR_KEYS: frozenset[str] = frozenset(
    {"name", "description", "weights", "offset", "min", "max", "max_velocity", "smoothing_time_constant",
     "default"}
)
REQUIRED_ACTUATOR_KEYS: tuple[str, ...] = ("name", "weights", "min", "max", "max_velocity", "default")
DEFAULT_MAX_DT = 0.25


class FaceMapError(ConfigError):
    """A robot face map file that cannot be used; the message names file, actuator and key."""


@dataclass(frozen=True)
class Actuator:
    """One actuator channel of the face, as read from the map file."""

    name: str
    weights: dict[str, float]
    offset: float
    min: float
    max: float
    max_velocity: float
    smoothing_time_constant: float
    default: float
    description: str = ""


class RobotFaceMap:
    """Stateful, rate- and position-limited retargeting of expression frames to actuators.

    ``step(frame, dt)`` returns the next command (float64, one value per actuator in
    :attr:`joint_names` order). The state is the last command; it starts at, and
    :meth:`reset` returns it to, the actuators' default positions.
    """

    def __init__(
        self,
        actuators: list[Actuator],
        *,
        name: str = "robot_face",
        units: str = "",
        max_dt: float = DEFAULT_MAX_DT,
    ) -> None:
        if not actuators:
            raise FaceMapError(f"{name}: a face map needs at least one actuator")
        self.name = name
        self.units = units
        self.max_dt = float(max_dt)
        self.actuators: tuple[Actuator, ...] = tuple(actuators)
        self.joint_names: tuple[str, ...] = tuple(a.name for a in actuators)
        self.weights: NDArray[np.float64] = np.zeros((len(actuators), expression.DIM))
        for i, act in enumerate(actuators):
            for channel, w in act.weights.items():
                self.weights[i, expression.index(channel)] = w
        self.offset = np.array([a.offset for a in actuators], dtype=np.float64)
        self.lower = np.array([a.min for a in actuators], dtype=np.float64)
        self.upper = np.array([a.max for a in actuators], dtype=np.float64)
        self.max_velocity = np.array([a.max_velocity for a in actuators], dtype=np.float64)
        self.tau = np.array([a.smoothing_time_constant for a in actuators], dtype=np.float64)
        self.default = np.array([a.default for a in actuators], dtype=np.float64)
        self.rejected_inputs = 0
        self.last_rejection = ""
        self.reset()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_yaml(cls, path: str | Path) -> RobotFaceMap:
        """Read and validate a map file (see ``docs/robot_face.md`` for the format)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FaceMapError(f"{path}: cannot read robot face map: {exc}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FaceMapError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> RobotFaceMap:
        """Validate an already-parsed map; ``source`` is used in error messages."""
        if not isinstance(data, Mapping):
            raise FaceMapError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - TOP_KEYS)
        if unknown:
            raise FaceMapError(
                f"{source}: unknown top-level key(s) {unknown}{_suggest(unknown[0], TOP_KEYS)}; "
                f"allowed: {sorted(TOP_KEYS)}"
            )
        max_dt = _number(data.get("max_dt", DEFAULT_MAX_DT), f"{source}: key 'max_dt'")
        if not (math.isfinite(max_dt) and max_dt > 0):
            raise FaceMapError(f"{source}: key 'max_dt' must be a finite number > 0, got {max_dt}")
        raw = data.get("actuators")
        if not isinstance(raw, list) or not raw:
            raise FaceMapError(f"{source}: key 'actuators' must be a non-empty list of actuator mappings")
        actuators: list[Actuator] = []
        seen: set[str] = set()
        for i, entry in enumerate(raw):
            act = _parse_actuator(entry, i, source)
            if act.name in seen:
                raise FaceMapError(
                    f"{source}: actuator {act.name!r} (#{i}): key 'name': duplicate actuator name"
                )
            seen.add(act.name)
            actuators.append(act)
        return cls(
            actuators,
            name=str(data.get("name", Path(source).stem)),
            units=str(data.get("units", "")),
            max_dt=max_dt,
        )

    # ------------------------------------------------------------------ running
    def reset(self) -> None:
        """Return the state to the default (safe) positions and forget held inputs."""
        self._command = self.default.copy()
        self._last_input = expression.NEUTRAL.astype(np.float64)

    @property
    def command(self) -> NDArray[np.float64]:
        """A copy of the last command (the defaults before the first step)."""
        return self._command.copy()

    def target(self, frame: ArrayLike) -> NDArray[np.float64]:
        """Position-limited linear map of one sanitised frame, without state or rate limits."""
        x = self._sanitise(frame, update=False)
        if x is None:
            raise ValueError(f"expected one frame of {expression.DIM} numbers: {self.last_rejection}")
        return np.clip(self.offset + self.weights @ x, self.lower, self.upper)

    def step(self, frame: ArrayLike, dt: float) -> NDArray[np.float64]:
        """Advance by ``dt`` seconds towards the pose for ``frame``; returns the new command."""
        x = self._sanitise(frame, update=True)
        if x is None:
            return self.command
        return self._advance(np.clip(self.offset + self.weights @ x, self.lower, self.upper), dt)

    def step_to_default(self, dt: float) -> NDArray[np.float64]:
        """Move towards the default positions under the same limits (e.g. on shutdown or lost input)."""
        return self._advance(self.default, dt)

    def _advance(self, target: NDArray[np.float64], dt: float) -> NDArray[np.float64]:
        try:
            dt = float(dt)
        except (TypeError, ValueError):
            return self.command
        if not (math.isfinite(dt) and dt > 0.0):
            return self.command
        dt = min(dt, self.max_dt)
        # tau == 0 means no smoothing: exp(-inf) == 0, so alpha == 1.
        with np.errstate(divide="ignore"):
            alpha = 1.0 - np.exp(-dt / self.tau)
        smoothed = self._command + alpha * (target - self._command)
        limit = self.max_velocity * dt
        new = self._command + np.clip(smoothed - self._command, -limit, limit)
        self._command = np.clip(new, self.lower, self.upper)
        return self.command

    def _sanitise(self, frame: ArrayLike, *, update: bool) -> NDArray[np.float64] | None:
        try:
            arr = np.asarray(frame, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            return self._reject(f"not numeric ({exc})")
        if arr.shape != (expression.DIM,):
            return self._reject(f"got {arr.size} values")
        bad = ~np.isfinite(arr)
        if bad.any():
            arr = arr.copy()
            arr[bad] = self._last_input[bad]
        x = expression.clamp(arr).astype(np.float64)
        if update:
            self._last_input = x
        return x

    def _reject(self, why: str) -> None:
        self.rejected_inputs += 1
        self.last_rejection = why
        return None

    def __repr__(self) -> str:
        return f"RobotFaceMap(name={self.name!r}, joints={list(self.joint_names)})"


def _parse_actuator(entry: Any, i: int, source: str) -> Actuator:
    if not isinstance(entry, Mapping):
        raise FaceMapError(f"{source}: actuator #{i}: expected a mapping, got {type(entry).__name__}")
    label = f"{source}: actuator {entry.get('name', '?')!r} (#{i})"
    unknown = sorted(set(map(str, entry)) - ACTUATOR_KEYS)
    if unknown:
        raise FaceMapError(
            f"{label}: unknown key {unknown[0]!r}{_suggest(unknown[0], ACTUATOR_KEYS)}; "
            f"allowed: {sorted(ACTUATOR_KEYS)}"
        )
    for key in REQUIRED_ACTUATOR_KEYS:
        if key not in entry:
            raise FaceMapError(f"{label}: missing required key {key!r}")
    name = entry["name"]
    if not isinstance(name, str) or not name:
        raise FaceMapError(f"{label}: key 'name' must be a non-empty string, got {name!r}")
    weights_raw = entry["weights"]
    if not isinstance(weights_raw, Mapping):
        raise FaceMapError(f"{label}: key 'weights' must map expression channel names to numbers")
    weights: dict[str, float] = {}
    for channel, w in weights_raw.items():
        try:
            expression.index(str(channel))
        except KeyError as exc:
            raise FaceMapError(f"{label}: key 'weights': {exc.args[0]}") from None
        weights[str(channel)] = _finite(w, f"{label}: key 'weights.{channel}'")
    lo = _finite(entry["min"], f"{label}: key 'min'")
    hi = _finite(entry["max"], f"{label}: key 'max'")
    if lo >= hi:
        raise FaceMapError(f"{label}: key 'min': min ({lo}) must be smaller than max ({hi})")
    vmax = _finite(entry["max_velocity"], f"{label}: key 'max_velocity'")
    if vmax <= 0:
        raise FaceMapError(f"{label}: key 'max_velocity' must be > 0 (units per second), got {vmax}")
    tau = _finite(entry.get("smoothing_time_constant", 0.0), f"{label}: key 'smoothing_time_constant'")
    if tau < 0:
        raise FaceMapError(f"{label}: key 'smoothing_time_constant' must be >= 0 seconds, got {tau}")
    default = _finite(entry["default"], f"{label}: key 'default'")
    if not lo <= default <= hi:
        raise FaceMapError(f"{label}: key 'default' ({default}) must lie within [min, max] = [{lo}, {hi}]")
    offset = _finite(entry.get("offset", 0.0), f"{label}: key 'offset'")
    return Actuator(
        name=name,
        weights=weights,
        offset=offset,
        min=lo,
        max=hi,
        max_velocity=vmax,
        smoothing_time_constant=tau,
        default=default,
        description=str(entry.get("description", "")),
    )


def _number(value: Any, where: str) -> float:
    # bool is an int subclass; "max: true" is a typo, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaceMapError(f"{where} must be a number, got {value!r}")
    return float(value)


def _finite(value: Any, where: str) -> float:
    v = _number(value, where)
    if not math.isfinite(v):
        raise FaceMapError(f"{where} must be finite, got {v}")
    return v


def _suggest(name: str, choices: frozenset[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(choices), n=2)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
