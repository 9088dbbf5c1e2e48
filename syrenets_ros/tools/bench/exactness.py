"""``syrenets-ros bench exactness``: the simulator against the ground truth of SPEC §2b.

1. Per scenario (rigid, spring, viscous damping, Coulomb friction, all three, all three after
   a link-2 swap): PD tracking of the multi-sine reference with a random torque on top, then
   the largest and RMS |τ_k − extended inverse dynamics(q_k, q̇_k, (q̇_{k+1} − q̇_k)/Δt)|
   over the run, next to the torque's own RMS.
2. Sensor noise at the realistic σ of SPEC §2b: the σ measured on each channel.
3. CPU cost per step (process time, one thread) of what the step loop adds: the core step
   rigid and with elements, the per-point true inverse dynamics, the noise draw.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from syrenets_ros.dynamics.pendulum import JointElements, PendulumParams, inverse_dynamics, inverse_dynamics_at
from syrenets_ros.plant.control import pd_torque
from syrenets_ros.plant.excitation import MultiSine
from syrenets_ros.plant.sensor import SensorNoise
from syrenets_ros.plant.settings import SimSettings
from syrenets_ros.plant.simulator import Simulator

TIME_STEP = 1.0e-3
SPRING = JointElements(stiffness=(0.0, 50.0), rest_angle=(0.0, 0.4))
ALL = JointElements(stiffness=(20.0, 50.0), rest_angle=(0.1, 0.4), damping=(2.0, 2.0), friction=(3.0, 1.0))
SCENARIOS: dict[str, tuple[PendulumParams, JointElements]] = {
    "rigid": (PendulumParams(), JointElements()),
    "spring k=50 at joint 2": (PendulumParams(), SPRING),
    "viscous b=2 both joints": (PendulumParams(), JointElements(damping=(2.0, 2.0))),
    "Coulomb c=(3, 1)": (PendulumParams(), JointElements(friction=(3.0, 1.0))),
    "spring + viscous + Coulomb": (PendulumParams(), ALL),
    "all three, link 2 swapped": (PendulumParams(m2=2.0, l2=1.2), ALL),
}
REALISTIC_SIGMA = (1e-4, 1e-3, 0.1)  # σ_q [rad], σ_q̇ [rad/s], σ_τ [N·m] (SPEC §2b)


def exactness(params: PendulumParams, elements: JointElements, steps: int, seed: int = 0) -> dict[str, float]:
    """Run the core with PD tracking plus a random torque; compare with the ground truth."""
    excitation = MultiSine.from_seed(seed)
    settings = SimSettings()
    rng = np.random.default_rng(seed)
    q0, qd0, _ = excitation.sample(0.0)
    states, torques = [], []
    with Simulator(params, TIME_STEP, q0, qd0, joints=elements) as sim:
        for k in range(steps):
            q, qd = sim.state()
            q_d, qd_d, _ = excitation.sample(k * TIME_STEP)
            tau = np.add(pd_torque(settings, q, qd, q_d, qd_d, None), rng.normal(0.0, 5.0, 2)).tolist()
            states.append((*q, *qd))
            torques.append(tau)
            sim.step(tau)
        q, qd = sim.state()
        states.append((*q, *qd))
    x = torch.tensor(states, dtype=torch.float64)
    applied = torch.tensor(torques, dtype=torch.float64)
    truth = inverse_dynamics(x[:-1, :2], x[:-1, 2:], (x[1:, 2:] - x[:-1, 2:]) / TIME_STEP, params, elements)
    error = (truth - applied).abs()
    return {"steps": steps, "max_error": error.max().item(), "rms_error": error.pow(2).mean().sqrt().item(),
            "torque_rms": applied.pow(2).mean().sqrt().item()}


def measured_noise(steps: int, seed: int = 0) -> list[float]:
    noise = SensorNoise(REALISTIC_SIGMA, seed)
    draws = []
    for _ in range(steps):
        noise.next_step()
        q, qd = noise.state((0.0, 0.0), (0.0, 0.0))
        draws.append((q, qd, noise.effort((0.0, 0.0))))
    return np.array(draws).std(axis=(0, 2)).tolist()


def _microseconds(action, repeats: int) -> float:
    start = time.process_time()
    for _ in range(repeats):
        action()
    return (time.process_time() - start) / repeats * 1e6


def step_costs(repeats: int) -> dict[str, float]:
    costs = {}
    for label, elements in (("core step, rigid", JointElements()), ("core step, spring+damping+friction", ALL)):
        with Simulator(PendulumParams(), TIME_STEP, (0.5, -0.3), (0.1, 0.2), joints=elements) as sim:
            costs[label] = _microseconds(lambda: sim.step((1.0, -1.0)), repeats)
    point = ([0.1, 0.2], [0.3, -0.4], [1.0, 2.0])
    costs["true inverse dynamics at one point"] = _microseconds(
        lambda: inverse_dynamics_at(*point, PendulumParams(), ALL), repeats)
    noise = SensorNoise(REALISTIC_SIGMA, 0)

    def measure() -> None:
        noise.next_step()
        noise.state((0.1, 0.2), (0.3, 0.4))
        noise.effort((1.0, 2.0))
    costs["sensor noise draw and apply"] = _microseconds(measure, repeats)
    return costs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=5000, help="steps per exactness scenario")
    parser.add_argument("--noise-steps", type=int, default=100_000, help="draws for the measured σ")
    parser.add_argument("--repeats", type=int, default=20_000, help="repeats per timed operation")
    parser.add_argument("--json", type=Path, default=Path("runs/bench_exactness.json"))


def run(args: argparse.Namespace) -> int:
    if min(args.steps, args.noise_steps, args.repeats) <= 1:
        print("--steps, --noise-steps and --repeats must be > 1")
        return 2
    results = {name: exactness(params, elements, args.steps) for name, (params, elements) in SCENARIOS.items()}
    width = max(map(len, results))
    print(f"{'scenario':<{width}}  {'max |τ − ID| [N·m]':>20}  {'RMS |τ − ID| [N·m]':>20}  {'τ RMS [N·m]':>12}")
    for name, r in results.items():
        print(f"{name:<{width}}  {r['max_error']:>20.3e}  {r['rms_error']:>20.3e}  {r['torque_rms']:>12.3f}")
    sigma = measured_noise(args.noise_steps)
    print(f"\nsensor noise, {args.noise_steps} draws: requested σ {list(REALISTIC_SIGMA)}, "
          f"measured σ [{', '.join(f'{s:.4g}' for s in sigma)}] (q rad, q̇ rad/s, τ N·m)")
    costs = step_costs(args.repeats)
    print("\nCPU per call (process time, single thread, machine load shared):")
    for name, micro in costs.items():
        print(f"  {name:<40} {micro:8.2f} µs")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"exactness": results, "noise_sigma_requested": REALISTIC_SIGMA,
                                     "noise_sigma_measured": sigma, "cost_us": costs}, indent=2))
    print(f"wrote {args.json}")
    return 0
