"""The simulator's run-time settings: its parameter table (the single source of defaults,
ranges and docs) and the validated, immutable settings the step loop swaps in at a step
boundary. No ROS import."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, MAX_COGGING_PERIODS, JointElements, PendulumParams
from syrenets_ros.plant.excitation import MAX_AMPLITUDE
from syrenets_ros.plant.robot import PendulumRobot, Robot, step_load as matrix_step_load, urdf_robot
from syrenets_ros.schema import NodeSchema, Param

NODE_NAME = "pendulum_sim"
_PAPER = PendulumParams()
_ZEROS = (0.0,) * len(JOINT_NAMES)
# Upper bounds of [σ_q, σ_q̇, σ_τ]: beyond them the "sensor" reports mostly noise.
MEASUREMENT_NOISE_LIMITS = (1.0, 10.0, 100.0)
FEEDFORWARD_SOURCES = ("predictor", "true_model")

# Semi-implicit Euler with damping b and stiffness k taken at the step's start is stable on a
# joint of inertia I when 2·Δt·b/I + Δt²·k/I < 4 (Jury's test on v' = v − Δt(k x + b v)/I,
# x' = x + Δt v'; b alone: Δt·b/I < 2, k alone: Δt²·k/I < 4). Settings are held to half of it.
STEP_BOUND = 2.0

MAX_PAYLOAD = 50.0  # kg
_PER_JOINT = "one value per joint (the robot_description's movable joints, in order); a URDF robot left at the " \
    "double pendulum's default gets its own"

SIM_PARAMETERS = NodeSchema(NODE_NAME, (
    Param("robot_description", "", "URDF text of the simulated robot (the ROS convention; fixed-base, revolute "
          "and prismatic joints); empty = the double pendulum of SPEC §2. Joint names come from it", read_only=True),
    Param("payload_mass", 0.0, "a solid sphere (radius 5 cm) rigidly attached at the flange of a robot_description "
          "robot; body rebuilt at a step boundary, q and q̇ kept (the double pendulum: use link2_mass)", "kg",
          0.0, MAX_PAYLOAD),
    Param("link1_mass", _PAPER.m1, "mass of the double pendulum's upper rod; body rebuilt at a step boundary, q "
          "and q̇ kept (refused for a robot_description robot)", "kg", 0.01, 100.0),
    Param("link1_length", _PAPER.l1, "length of the upper rod", "m", 0.05, 10.0),
    Param("link2_mass", _PAPER.m2, "mass of the lower rod", "kg", 0.01, 100.0),
    Param("link2_length", _PAPER.l2, "length of the lower rod", "m", 0.05, 10.0),
    Param("gravity", _PAPER.g, "gravitational acceleration along −z", "m/s²", 0.0, 100.0),
    Param("time_step", 1.0e-3, "physics step; fixed for the node's lifetime", "s", 1.0e-4, 1.0e-2,
          read_only=True),
    Param("real_time_factor", 1.0, "sim seconds per wall second; 0 = as fast as possible", "", 0.0, 10.0),
    Param("kp", (300.0, 100.0), f"PD position gains, {_PER_JOINT}: (ω², 2ω)·min M_ii over the workspace for kp, "
          "kd, ω ≤ 30 rad/s as the step allows", "N·m/rad", 0.0, 1.0e5),
    Param("kd", (150.0, 20.0), "PD velocity gains, one per joint (defaults: see kp); acts as damping: refused "
          "where the step cannot integrate it (see joint_damping)", "N·m·s/rad", 0.0, 1.0e4),
    Param("torque_limit", 500.0, "clamp of |τ| per joint (> 0)", "N·m", 0.0, 1.0e5),
    Param("feedforward_enabled", True, "add /syrenets/predicted_torque to the PD torque"),
    Param("feedforward_source", FEEDFORWARD_SOURCES[0], "where the feed-forward comes from: predictor = "
          "/syrenets/predicted_torque; true_model = the true inverse dynamics of the system in force, "
          "computed in this process (tracking without transport loss or model error)",
          choices=FEEDFORWARD_SOURCES),
    Param("feedforward_timeout", 0.05, "newest earlier prediction used when none is stamped for now, "
          "at most this old", "s", 0.0, 1.0),
    Param("excitation_seed", 0, "seed of the multi-sine reference", "", 0, 2**31 - 1),
    Param("excitation_amplitude", 1.0, "bound of |q_d − c| per joint, c = 0 for the double pendulum, the middle "
          "of the joint's range for a URDF robot (whose reference also stays within 80 % of each joint's half range "
          "and velocity limit)", "rad", 0.0, MAX_AMPLITUDE),
    Param("excitation_base_frequency", 0.1, "lowest harmonic of the reference (harmonics 1..5)", "Hz",
          0.001, 5.0),
    Param("reference_lead", 0.05, "how far ahead /pendulum/reference looks; size it to the predictor's "
          "latency", "s", 0.0, 1.0),
    Param("reference_points", 10, "steps per /pendulum/reference message: every N steps, the next N "
          "points, answered in one batched predictor call", "", 1, 100),
    Param("joint_stiffness", _ZEROS, f"joint springs: the motor adds k⊙(q − r); applied exactly by the "
          f"simulator at a step boundary; {_PER_JOINT} (zeros)", "N·m/rad", 0.0, 1.0e4),
    Param("joint_rest_angle", _ZEROS, "r: where each joint spring is relaxed, one per joint", "rad", -math.pi,
          math.pi),
    Param("joint_damping", _ZEROS, "viscous joint damping b: the motor adds b⊙q̇. Damping and stiffness "
          "are applied from the state at the step's start, so a change (or a lighter or shorter link) is "
          "refused where the step cannot integrate them: M⁻¹(2Δt·(b + kd) + Δt²·(k + kp)) must stay "
          f"≤ {STEP_BOUND:g}, half of semi-implicit Euler's bound 4, for the inertia M in force",
          "N·m·s/rad", 0.0, 1.0e3),
    Param("joint_friction", _ZEROS, "Coulomb joint friction c: the motor adds c⊙sign(q̇), one per joint", "N·m",
          0.0, 1.0e3),
    Param("joint_cogging", _ZEROS, "cogging a: a detent potential a(1 − cos p·q) per joint, as a direct-drive "
          "motor's magnets give (the motor adds a·p·sin(p·q)); beyond SPEC §2b, one per joint", "J", 0.0, 100.0),
    Param("cogging_periods", 5, "p: detents per revolution of joint_cogging, every joint alike", "", 1,
          MAX_COGGING_PERIODS),
    Param("measurement_noise", (0.0, 0.0, 0.0), "[σ_q, σ_q̇, σ_τ] of the Gaussian noise on /joint_states and "
          "on what the controller sees, never on the physics; at most "
          + ", ".join(f"{limit:g}" for limit in MEASUREMENT_NOISE_LIMITS),
          "rad, rad/s, N·m", 0.0, max(MEASUREMENT_NOISE_LIMITS), length=3),
    Param("noise_seed", 0, "seed of the measurement noise; a new value restarts the noise sequence", "",
          0, 2**31 - 1),
    Param("clock_divider", 10, "/clock every N steps: each use_sim_time node runs a callback per /clock "
          "message, and message stamps carry the exact time anyway", "", 1, 1000),
))

# Parameter name -> PendulumParams field.
PHYSICAL = {"link1_mass": "m1", "link1_length": "l1", "link2_mass": "m2",
            "link2_length": "l2", "gravity": "g"}
PER_JOINT = ("kp", "kd", "joint_stiffness", "joint_rest_angle", "joint_damping", "joint_friction", "joint_cogging")


def _default(name: str) -> Any:
    return SIM_PARAMETERS.default(name)


@dataclass(frozen=True)
class SimSettings:
    """Everything run-time tunable; the step loop swaps in a new one at a step boundary."""

    params: PendulumParams = field(default_factory=PendulumParams)
    time_step: float = _default("time_step")  # read-only: set once, when the node starts
    kp: tuple[float, ...] = _default("kp")
    kd: tuple[float, ...] = _default("kd")
    torque_limit: float = _default("torque_limit")
    real_time_factor: float = _default("real_time_factor")
    feedforward_enabled: bool = _default("feedforward_enabled")
    feedforward_timeout: float = _default("feedforward_timeout")
    excitation_seed: int = _default("excitation_seed")
    excitation_amplitude: float = _default("excitation_amplitude")
    excitation_base_frequency: float = _default("excitation_base_frequency")
    reference_lead: float = _default("reference_lead")
    reference_points: int = _default("reference_points")
    clock_divider: int = _default("clock_divider")
    feedforward_source: str = _default("feedforward_source")
    joint_stiffness: tuple[float, ...] = _default("joint_stiffness")
    joint_rest_angle: tuple[float, ...] = _default("joint_rest_angle")
    joint_damping: tuple[float, ...] = _default("joint_damping")
    joint_friction: tuple[float, ...] = _default("joint_friction")
    joint_cogging: tuple[float, ...] = _default("joint_cogging")
    cogging_periods: int = _default("cogging_periods")
    measurement_noise: tuple[float, ...] = _default("measurement_noise")
    noise_seed: int = _default("noise_seed")
    robot_description: str = _default("robot_description")  # read-only
    payload_mass: float = _default("payload_mass")

    @cached_property
    def robot(self) -> Robot:
        """What the simulator holds and the truth is computed from (URDF robots parsed once)."""
        if not self.robot_description:
            return PendulumRobot(self.params)
        return urdf_robot(self.robot_description, self.payload_mass, self.params.g)

    @cached_property
    def joint_elements(self) -> JointElements:
        """Springs, damping and friction as the simulator and the ground truth take them
        (built once per settings: the step loop reads it every step)."""
        return JointElements(self.joint_stiffness, self.joint_rest_angle, self.joint_damping,
                             self.joint_friction, self.joint_cogging, self.cogging_periods)


def initial_settings(values: dict[str, Any]) -> SimSettings:
    """The settings a node starts with from its declared values: a robot_description robot's
    per-joint parameters still at the double pendulum's defaults become its own (zeros for the
    joint elements, gains sized to its inertia); ValueError says what is wrong."""
    values = dict(values)
    description = values.get("robot_description", "")
    if description:
        robot = urdf_robot(description, 0.0, values.get("gravity", _PAPER.g))
        n = len(robot.joint_names)
        gains = robot.default_gains(values.get("time_step", _default("time_step")), STEP_BOUND / 2.0)
        own = {"kp": gains[0], "kd": gains[1], **{name: (0.0,) * n for name in PER_JOINT[2:]}}
        for name in PER_JOINT:
            if tuple(values.get(name, _default(name))) == _default(name):
                values[name] = own[name]
    return settings_with(SimSettings(), values, running=False)


def settings_with(settings: SimSettings, changes: dict[str, Any], *, running: bool = True) -> SimSettings:
    """A validated copy of ``settings`` with parameter-name → value changes; ValueError says why.
    Types and ranges come from :data:`SIM_PARAMETERS`; what a table cannot say is checked here."""
    checked = SIM_PARAMETERS.check(changes, running=running)
    physical = {PHYSICAL[name]: checked.pop(name) for name in list(checked) if name in PHYSICAL}
    new = replace(settings, params=settings.params.with_changes(**physical), **checked)
    if new.robot_description:
        moved = [name for name, key in PHYSICAL.items()
                 if key != "g" and getattr(new.params, key) != getattr(settings.params, key)]
        if moved:
            raise ValueError(f"{', '.join(moved)} belong to the double pendulum; this simulator holds the "
                             "robot_description robot (payload_mass changes its load)")
    elif new.payload_mass:
        raise ValueError("payload_mass needs a robot_description robot; the double pendulum's load is "
                         "link2_mass and link2_length")
    names = new.robot.joint_names  # parses a new robot_description: UrdfError says why it is refused
    for name in PER_JOINT:
        if len(getattr(new, name)) != len(names):
            raise ValueError(f"{name} needs {len(names)} values, one per joint ({', '.join(names)}), "
                             f"got {len(getattr(new, name))}")
    if new.torque_limit <= 0.0:
        raise ValueError(f"torque_limit must be > 0, got {new.torque_limit!r}")
    for name, sigma, limit in zip(("σ_q", "σ_q̇", "σ_τ"), new.measurement_noise, MEASUREMENT_NOISE_LIMITS):
        if sigma > limit:
            raise ValueError(f"measurement_noise {name} must be <= {limit:g}, got {sigma!r}")
    new.robot.excitation(new.excitation_seed, new.excitation_amplitude,
                         new.excitation_base_frequency)  # raises on a bad combination
    _check_step_stable(new)
    return new


def step_load(settings: SimSettings) -> tuple[float, float]:
    """(max over the pose of the largest eigenvalue of M⁻¹(q)·(2Δt·D + Δt²·K), the smallest
    effective joint inertia 1/λ_max(M⁻¹) [kg·m²]) with D = diag(b + kd), K = diag(k + kp + a·p²)
    (a·p²: the cogging's stiffest slope): the matrix form of 2Δt·b/I + Δt²·k/I, over the
    robot's sampled workspace."""
    dt = settings.time_step
    load = np.diag([2 * dt * damping + dt * dt * stiffness
                    for damping, stiffness in zip(_step_damping(settings), _step_stiffness(settings))])
    inverse_mass = settings.robot.inverse_mass_samples
    return matrix_step_load(inverse_mass, load), 1.0 / float(np.linalg.eigvalsh(inverse_mass).max())


def _step_damping(settings: SimSettings) -> list[float]:
    """b + kd per joint: the damping the explicit step integrates."""
    return [b + kd for b, kd in zip(settings.joint_damping, settings.kd)]


def _step_stiffness(settings: SimSettings) -> list[float]:
    """k + kp + a·p² per joint: the stiffness the explicit step integrates (a·p², the
    cogging's stiffest slope)."""
    return [k + kp + a * settings.cogging_periods ** 2
            for k, kp, a in zip(settings.joint_stiffness, settings.kp, settings.joint_cogging)]


def _check_step_stable(settings: SimSettings) -> None:
    """ValueError when the damping and stiffness in force (joint elements plus the PD gains)
    are more than the explicit step can integrate for the inertia in force."""
    load, inertia = step_load(settings)
    if load > STEP_BOUND:
        damping = ", ".join(f"{value:g}" for value in _step_damping(settings))
        stiffness = ", ".join(f"{value:g}" for value in _step_stiffness(settings))
        raise ValueError(
            f"the {settings.time_step:g} s step cannot integrate damping b + kd = ({damping}) N·m·s/rad with "
            f"stiffness k + kp + a·p² = ({stiffness}) N·m/rad on these links: M⁻¹(2Δt·D + Δt²·K) reaches "
            f"{load:.3g}, above {STEP_BOUND:g} (half of semi-implicit Euler's stability bound 4); the smallest "
            f"effective joint inertia is {inertia:.3g} kg·m². Lower joint_damping, kd, joint_stiffness, "
            "joint_cogging or kp"
            + ("" if settings.robot_description else ", or make the links heavier or longer"))
