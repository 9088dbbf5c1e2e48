"""``syrenets-ros bench urdf``: a 7-joint arm from its URDF, learned as a grey box (issue 21).

The Franka Panda of example-robot-data (:func:`dynamics.urdf.panda_urdf`) with viscous and
Coulomb friction on every joint and springs on every other one (:data:`ELEMENTS`) tracks a
multisine inside its joint limits (computed torque, Pinocchio's forward dynamics, the
simulator's semi-implicit 1 kHz step:
:func:`dynamics.urdf_motion.tracking_record`). Measured, on one torch thread:

- *offline fit*: :func:`learning.rigid_body.fit_rigid_body` on the first 80 % of the record
  (CPU seconds of this process, base-parameter identification separately), clean and with
  sensor noise σ = [σ_q, σ_q̇, σ_τ] added to what is recorded (q̈ then is the forward difference
  of the noisy q̇, as the learner forms it); the relative torque error ‖τ̂ − τ‖/‖τ‖ on the
  held-out 20 % (the noise-free truth at the true states) and on wide-range states (q uniform
  within the joint limits, |q̇| ≤ 6 rad/s, |q̈| ≤ 30 rad/s²: faster than the record);
- *payload*: the online learner with the URDF as robot_description, driven as its node drives
  it (samples every 20 ms, one selection per second of stream time), while 1 kg is fixed at
  the flange halfway through: when the change was detected, and the stream time after the
  change until the served model's wide-range error against the loaded arm is within 1 % and
  stays there (clean and noisy).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from syrenets_ros.dynamics.chain import ChainRecord
from syrenets_ros.dynamics.urdf import RigidBodyRobot, panda_urdf, with_payload
from syrenets_ros.dynamics.pendulum import JointElements
from syrenets_ros.dynamics.urdf_motion import tracking_record
from syrenets_ros.learning.rigid_body import BaseParameters, RigidBodyLibrary, fit_rigid_body
from syrenets_ros.online.learner import LearnerConfig, OnlineLearner
from syrenets_ros.tools.streams import REALISTIC_NOISE, Stream, deliver

# Springs on every other joint, viscous and Coulomb friction on all (what the URDF leaves out).
ELEMENTS = JointElements(stiffness=(4.0, 0.0, 3.0, 0.0, 2.0, 0.0, 1.0), rest_angle=(0.3, 0.0, -0.2, 0.0, 0.5, 0.0, -0.4),
                         damping=tuple(0.1 * (j + 1) for j in range(7)), friction=tuple(0.05 * (j + 1) for j in range(7)))
PAYLOAD_KG = 1.0
PAYLOAD_OFFSET = (0.0, 0.0, 0.05)  # m from the flange (panda_link8)
HELD_OUT = 0.2  # share of the record after the fitted part
NODE_CHUNK = 20  # samples per learner step: the node takes joint states every 20 ms
ADAPTED = 1e-2  # relative wide-range torque error that counts as adapted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="record length of the offline fits (default 60)")
    parser.add_argument("--payload-seconds", type=float, default=30.0,
                        help="length of the online payload run, the payload added halfway (default 30; 0 = skip)")
    parser.add_argument("--noise", type=float, nargs=3, default=list(REALISTIC_NOISE), metavar=("SQ", "SQD", "STAU"),
                        help="σ_q [rad], σ_q̇ [rad/s], σ_τ [N·m] of the noisy runs (default: the realistic "
                             "%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="reference and noise seed (default 0)")
    parser.add_argument("--json", type=Path, default=Path("runs/bench_urdf.json"), help="output JSON path")


def with_noise(record: ChainRecord, sigma: tuple[float, float, float], seed: int) -> Stream:
    """What a sensor with ``sigma`` publishes of ``record``: Gaussian noise on q, q̇, τ, and q̈
    the forward difference of the published q̇ (the last sample, without a successor, dropped)."""
    generator = torch.Generator().manual_seed(seed)

    def noisy(values: torch.Tensor, s: float) -> torch.Tensor:
        return values + s * torch.randn(values.shape, generator=generator, dtype=values.dtype) if s else values

    q, qd, tau = (noisy(v, s) for v, s in zip((record.q, record.qd, record.tau), sigma))
    qdd = (qd[1:] - qd[:-1]) / (record.stamp[1:] - record.stamp[:-1])[:, None]
    return Stream(record.stamp[:-1], q[:-1], qd[:-1], qdd, tau[:-1], record.q[:-1], record.qd[:-1],
                  record.qdd[:-1], record.tau[:-1])


def wide_states(robot: RigidBodyRobot, count: int = 4000, seed: int = 7) -> tuple[np.ndarray, ...]:
    """Positions within the joint limits, velocities and accelerations beyond the record's."""
    rng = np.random.default_rng(seed)
    lower, upper = robot.position_limits
    q = rng.uniform(lower, upper, size=(count, robot.n_joints))
    return q, rng.uniform(-6.0, 6.0, size=q.shape), rng.uniform(-30.0, 30.0, size=q.shape)


def relative_error(model, robot: RigidBodyRobot, states: tuple[np.ndarray, ...]) -> float:
    """‖τ̂ − τ‖/‖τ‖ against ``robot`` with the bench's springs and friction on ``states``."""
    q, qd, qdd = states
    truth = robot.inverse_dynamics(q, qd, qdd) + ELEMENTS.torque(torch.from_numpy(q), torch.from_numpy(qd)).numpy()
    with torch.no_grad():
        predicted = model.torque(*(torch.from_numpy(v) for v in states)).numpy()
    return float(np.linalg.norm(predicted - truth) / np.linalg.norm(truth))


def offline_fit(library: RigidBodyLibrary, stream: Stream, robot: RigidBodyRobot) -> dict[str, float]:
    """Fit on the first 1 − HELD_OUT of the stream; errors held out and wide-range; CPU s."""
    split = round((1.0 - HELD_OUT) * len(stream.stamp))
    fit = slice(0, split)
    started = time.process_time()
    model = fit_rigid_body(library, stream.stamp[fit], stream.q[fit], stream.qd[fit], stream.qdd[fit], stream.tau[fit])
    cpu = time.process_time() - started
    held = slice(split, None)
    with torch.no_grad():
        predicted = model.torque(stream.clean_q[held], stream.clean_qd[held], stream.clean_qdd[held])
    truth = stream.clean_tau[held]
    return {"fit_cpu_s": cpu, "held_out_error": float((predicted - truth).norm() / truth.norm()),
            "wide_error": relative_error(model, robot, wide_states(robot))}


def payload_run(panda: RigidBodyRobot, loaded: RigidBodyRobot, seconds: float, sigma: tuple[float, float, float],
                seed: int) -> dict[str, float]:
    """The online learner through a payload change halfway: detection and adaptation times."""
    change = 0.5 * seconds
    record = tracking_record(panda, seconds, seed=seed, elements=ELEMENTS, switch=(change, loaded))
    stream = with_noise(record, sigma, seed + 1)
    states = wide_states(panda, 1000)
    clock = [0.0]
    config = LearnerConfig.from_parameters({"robot_description": panda.urdf})
    learner = OnlineLearner(config, log=lambda _: None, clock=lambda: clock[0])
    errors: list[tuple[float, float]] = []  # (stamp, served model's error against the robot of that time)
    started = time.process_time()
    for stamp in deliver(learner, stream, NODE_CHUNK):
        clock[0] = stamp
        if learner.maybe_select() is not None:
            errors.append((stamp, relative_error(learner.served, loaded if stamp >= change else panda, states)))
    cpu = time.process_time() - started
    before = [e for t, e in errors if t < change]
    after = [(t, e) for t, e in errors if t >= change]
    # Adapted from the first selection after which every served model is within ADAPTED.
    adapted = math.nan
    for k, (t, _) in enumerate(after):
        if all(e <= ADAPTED for _, e in after[k:]):
            adapted = t - change
            break
    detected = learner.stats.change_stamps
    return {"change_s": change, "detected_s": detected[0] if detected else math.nan,
            "detections": len(detected), "error_before": before[-1] if before else math.nan,
            "error_end": after[-1][1] if after else math.nan, "adapted_after_s": adapted,
            "learner_cpu_s": cpu}


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    sigma = tuple(args.noise)
    panda = RigidBodyRobot.from_urdf(panda_urdf())
    loaded = RigidBodyRobot.from_urdf(with_payload(panda.urdf, "panda_link8", PAYLOAD_KG, PAYLOAD_OFFSET))
    started = time.process_time()
    library = RigidBodyLibrary(panda, BaseParameters.identify(panda))
    identify_cpu = time.process_time() - started
    print(f"Panda (example-robot-data, fingers locked): {panda.n_joints} joints, {len(library.base)} base "
          f"parameters + {len(library.forces)} friction + {2 * len(library.springs)} spring columns "
          f"(identified in {identify_cpu:.2f} s CPU); "
          f"multisine inside the joint limits, 1 kHz, one torch thread")
    record = tracking_record(panda, args.seconds, seed=args.seed, elements=ELEMENTS)
    rows = {}
    print(f"offline fit on {(1 - HELD_OUT) * args.seconds:.0f} s of {args.seconds:.0f} s"
          "   held-out err   wide err   fit CPU s")
    for label, noise in (("clean", (0.0, 0.0, 0.0)), ("noisy", sigma)):
        rows[label] = offline_fit(library, with_noise(record, noise, args.seed + 1), panda)
        row = rows[label]
        print(f"  {label:5s} σ={list(noise)!s:<22}            {row['held_out_error']:9.2e}  {row['wide_error']:9.2e}  "
              f"{row['fit_cpu_s']:8.2f}", flush=True)
    if args.payload_seconds > 0:
        print(f"online: {PAYLOAD_KG:g} kg at the flange after {args.payload_seconds / 2:g} s of {args.payload_seconds:g} s "
              f"(learner as its node drives it: 20 ms steps, a selection per second)")
        print("  run    detected at  detections  err before  err end  adapted (≤1 %) after  learner CPU s")
        for label, noise in (("clean", (0.0, 0.0, 0.0)), ("noisy", sigma)):
            row = payload_run(panda, loaded, args.payload_seconds, noise, args.seed)
            rows[f"payload_{label}"] = row
            print(f"  {label:5s}  {row['detected_s']:9.3f} s  {row['detections']:10d}  {row['error_before']:10.2e}  "
                  f"{row['error_end']:7.2e}  {row['adapted_after_s']:17.2f} s  {row['learner_cpu_s']:12.1f}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"seconds": args.seconds, "noise": list(sigma), "base_parameters": len(library.base),
                                     "identify_cpu_s": identify_cpu, "rows": rows}, indent=2))
    return 0
