"""The simulator's run-time settings: its parameter table (the single source of defaults,
ranges and docs) and the validated, immutable settings the step loop swaps in at a step
boundary. No ROS import."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, JointElements, PendulumParams
from syrenets_ros.plant.excitation import MAX_AMPLITUDE, MultiSine
from syrenets_ros.schema import NodeSchema, Param

NODE_NAME = "pendulum_sim"
_PAPER = PendulumParams()
_JOINTS = len(JOINT_NAMES)
_ZEROS = (0.0,) * _JOINTS
# Upper bounds of [σ_q, σ_q̇, σ_τ]: beyond them the "sensor" reports mostly noise.
MEASUREMENT_NOISE_LIMITS = (1.0, 10.0, 100.0)
FEEDFORWARD_SOURCES = ("predictor", "true_model")

# Semi-implicit Euler with damping b and stiffness k taken at the step's start is stable on a
# joint of inertia I when 2·Δt·b/I + Δt²·k/I < 4 (Jury's test on v' = v − Δt(k x + b v)/I,
# x' = x + Δt v'; b alone: Δt·b/I < 2, k alone: Δt²·k/I < 4). Settings are held to half of it.
STEP_BOUND = 2.0

SIM_PARAMETERS = NodeSchema(NODE_NAME, (
    Param("link1_mass", _PAPER.m1, "mass of the upper rod; body rebuilt at a step boundary, q and q̇ kept",
          "kg", 0.01, 100.0),
    Param("link1_length", _PAPER.l1, "length of the upper rod", "m", 0.05, 10.0),
    Param("link2_mass", _PAPER.m2, "mass of the lower rod", "kg", 0.01, 100.0),
    Param("link2_length", _PAPER.l2, "length of the lower rod", "m", 0.05, 10.0),
    Param("gravity", _PAPER.g, "gravitational acceleration along −z", "m/s²", 0.0, 100.0),
    Param("time_step", 1.0e-3, "physics step; fixed for the node's lifetime", "s", 1.0e-4, 1.0e-2,
          read_only=True),
    Param("real_time_factor", 1.0, "sim seconds per wall second; 0 = as fast as possible", "", 0.0, 10.0),
    Param("kp", (300.0, 100.0), "PD position gains per joint", "N·m/rad", 0.0, 1.0e5, length=_JOINTS),
    Param("kd", (150.0, 20.0), "PD velocity gains per joint; acts as damping: refused where the step "
          "cannot integrate it (see joint_damping)", "N·m·s/rad", 0.0, 1.0e4, length=_JOINTS),
    Param("torque_limit", 500.0, "clamp of |τ| per joint (> 0)", "N·m", 0.0, 1.0e5),
    Param("feedforward_enabled", True, "add /syrenets/predicted_torque to the PD torque"),
    Param("feedforward_source", FEEDFORWARD_SOURCES[0], "where the feed-forward comes from: predictor = "
          "/syrenets/predicted_torque; true_model = the true inverse dynamics of the system in force, "
          "computed in this process (tracking without transport loss or model error)",
          choices=FEEDFORWARD_SOURCES),
    Param("feedforward_timeout", 0.05, "newest earlier prediction used when none is stamped for now, "
          "at most this old", "s", 0.0, 1.0),
    Param("excitation_seed", 0, "seed of the multi-sine reference", "", 0, 2**31 - 1),
    Param("excitation_amplitude", 1.0, "bound of |q_d| per joint", "rad", 0.0, MAX_AMPLITUDE),
    Param("excitation_base_frequency", 0.1, "lowest harmonic of the reference (harmonics 1..5)", "Hz",
          0.001, 5.0),
    Param("reference_lead", 0.05, "how far ahead /pendulum/reference looks; size it to the predictor's "
          "latency", "s", 0.0, 1.0),
    Param("reference_points", 10, "steps per /pendulum/reference message: every N steps, the next N "
          "points, answered in one batched predictor call", "", 1, 100),
    Param("joint_stiffness", _ZEROS, "joint springs: the motor adds k⊙(q − r); applied exactly by the "
          "simulator at a step boundary", "N·m/rad", 0.0, 1.0e4, length=_JOINTS),
    Param("joint_rest_angle", _ZEROS, "r: where each joint spring is relaxed", "rad", -math.pi, math.pi,
          length=_JOINTS),
    Param("joint_damping", _ZEROS, "viscous joint damping b: the motor adds b⊙q̇. Damping and stiffness "
          "are applied from the state at the step's start, so a change (or a lighter or shorter link) is "
          "refused where the step cannot integrate them: M⁻¹(2Δt·(b + kd) + Δt²·(k + kp)) must stay "
          f"≤ {STEP_BOUND:g}, half of semi-implicit Euler's bound 4, for the inertia M in force",
          "N·m·s/rad", 0.0, 1.0e3, length=_JOINTS),
    Param("joint_friction", _ZEROS, "Coulomb joint friction c: the motor adds c⊙sign(q̇)", "N·m", 0.0, 1.0e3,
          length=_JOINTS),
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
    measurement_noise: tuple[float, ...] = _default("measurement_noise")
    noise_seed: int = _default("noise_seed")

    @cached_property
    def joint_elements(self) -> JointElements:
        """Springs, damping and friction as the simulator and the ground truth take them
        (built once per settings: the step loop reads it every step)."""
        return JointElements(self.joint_stiffness, self.joint_rest_angle, self.joint_damping,
                             self.joint_friction)


def settings_with(settings: SimSettings, changes: dict[str, Any], *, running: bool = True) -> SimSettings:
    """A validated copy of ``settings`` with parameter-name → value changes; ValueError says why.
    Types and ranges come from :data:`SIM_PARAMETERS`; what a table cannot say is checked here."""
    checked = SIM_PARAMETERS.check(changes, running=running)
    physical = {PHYSICAL[name]: checked.pop(name) for name in list(checked) if name in PHYSICAL}
    new = replace(settings, params=settings.params.with_changes(**physical), **checked)
    if new.torque_limit <= 0.0:
        raise ValueError(f"torque_limit must be > 0, got {new.torque_limit!r}")
    for name, sigma, limit in zip(("σ_q", "σ_q̇", "σ_τ"), new.measurement_noise, MEASUREMENT_NOISE_LIMITS):
        if sigma > limit:
            raise ValueError(f"measurement_noise {name} must be <= {limit:g}, got {sigma!r}")
    MultiSine.from_seed(new.excitation_seed, new.excitation_amplitude,
                        new.excitation_base_frequency)  # raises on a bad combination
    _check_step_stable(new)
    return new


def step_load(settings: SimSettings) -> tuple[float, float]:
    """(max over the pose of the largest eigenvalue of M⁻¹(q)·(2Δt·D + Δt²·K), the smallest
    effective joint inertia 1/λ_max(M⁻¹) [kg·m²]) with D = diag(b + kd), K = diag(k + kp):
    the matrix form of 2Δt·b/I + Δt²·k/I. M depends on the pose through cos q2 only."""
    dt = settings.time_step
    a, b, c = settings.params.inertia_coefficients
    load = np.diag([2 * dt * (damping + kd) + dt * dt * (stiffness + kp) for damping, kd, stiffness, kp in
                    zip(settings.joint_damping, settings.kd, settings.joint_stiffness, settings.kp)])
    worst, softest = 0.0, 0.0
    for cos2 in np.linspace(-1.0, 1.0, 201):
        inverse = np.linalg.inv(np.array([[a + b + 2 * c * cos2, b + c * cos2], [b + c * cos2, b]]))
        worst = max(worst, float(np.linalg.eigvals(inverse @ load).real.max()))
        softest = max(softest, float(np.linalg.eigvalsh(inverse).max()))
    return worst, 1.0 / softest


def _check_step_stable(settings: SimSettings) -> None:
    """ValueError when the damping and stiffness in force (joint elements plus the PD gains)
    are more than the explicit step can integrate for the inertia in force."""
    load, inertia = step_load(settings)
    if load > STEP_BOUND:
        damping = ", ".join(f"{b + kd:g}" for b, kd in zip(settings.joint_damping, settings.kd))
        stiffness = ", ".join(f"{k + kp:g}" for k, kp in zip(settings.joint_stiffness, settings.kp))
        raise ValueError(
            f"the {settings.time_step:g} s step cannot integrate damping b + kd = ({damping}) N·m·s/rad with "
            f"stiffness k + kp = ({stiffness}) N·m/rad on these links: M⁻¹(2Δt·D + Δt²·K) reaches "
            f"{load:.3g}, above {STEP_BOUND:g} (half of semi-implicit Euler's stability bound 4); the smallest "
            f"effective joint inertia is {inertia:.3g} kg·m². Lower joint_damping, kd, joint_stiffness or kp, "
            "or make the links heavier or longer")
