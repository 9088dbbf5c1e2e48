"""Offline joint-state streams for learning tests and benchmarks, without ROS: the real
PyBullet pendulum tracking a multi-sine by PD + inverse-dynamics feed-forward, recorded the way
the sim node publishes (state k with the torque applied during step k), with seeded Gaussian
sensor noise added to what is recorded — never to the physics (SPEC §2b), with the simulator's
joint springs and friction when asked. :func:`simulate_structure` steps the ground-truth
dynamics with the simulator's own scheme instead, for changes of any kind mid-run."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning.terms import Force, Term, TermLibrary, TermModel, true_pendulum_terms
from syrenets_ros.online.stream import JointStateSample
from syrenets_ros.plant.excitation import MultiSine
from syrenets_ros.plant.simulator import Simulator

if TYPE_CHECKING:
    from syrenets_ros.online.learner import OnlineLearner

DT = 1.0e-3
REALISTIC_NOISE = (1.0e-4, 1.0e-3, 0.1)  # σ_q [rad], σ_q̇ [rad/s], σ_τ [N·m]


@dataclass
class Stream:
    stamp: torch.Tensor  # (B,)
    q: torch.Tensor  # (B, 2) published (noisy) samples ...
    qd: torch.Tensor
    qdd: torch.Tensor  # forward difference of the published q̇, as the learner forms it
    tau: torch.Tensor
    clean_q: torch.Tensor  # ... and the noise-free truth
    clean_qd: torch.Tensor
    clean_qdd: torch.Tensor
    clean_tau: torch.Tensor


def simulate(seconds: float, params: pendulum.PendulumParams = pendulum.PendulumParams(), *,
             seed: int = 0, noise: tuple[float, float, float] = (0.0, 0.0, 0.0), start: float = 0.0,
             joints: pendulum.JointElements = pendulum.RIGID, base_frequency: float = 0.2) -> Stream:
    """The PyBullet pendulum with ``joints``' springs and friction (applied by the simulator
    inside its step) tracking the multi-sine (harmonics 1..5 of ``base_frequency``; the sim
    node's default is 0.1 Hz, half as fast: less excitation per second)."""
    excitation = MultiSine.from_seed(seed, 1.0, base_frequency)
    q0, qd0, _ = excitation.sample(start)
    steps = round(seconds / DT)
    reference = [excitation.sample(start + k * DT) for k in range(steps + 1)]
    q_ref, qd_ref, qdd_ref = (torch.tensor([r[i] for r in reference], dtype=torch.float64) for i in range(3))
    feedforward = pendulum.inverse_dynamics(q_ref, qd_ref, qdd_ref, params, joints).tolist()
    states, torques = [], []
    with Simulator(params, DT, q0, qd0, joints=joints) as sim:
        for k in range(steps + 1):
            q, qd = sim.state()
            q_d, qd_d, _ = reference[k]
            tau = [feedforward[k][i] + 200.0 * (q_d[i] - q[i]) + 40.0 * (qd_d[i] - qd[i]) for i in range(2)]
            states.append((*q, *qd))
            torques.append(tau)
            sim.step(tau)
    states_t = torch.tensor(np.array(states), dtype=torch.float64)
    tau_t = torch.tensor(np.array(torques), dtype=torch.float64)
    generator = torch.Generator().manual_seed(1000 + seed)

    def noisy(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return x + sigma * torch.randn(x.shape, generator=generator, dtype=torch.float64)

    q, qd, tau = noisy(states_t[:, :2], noise[0]), noisy(states_t[:, 2:], noise[1]), noisy(tau_t, noise[2])
    clean_qdd = (states_t[1:, 2:] - states_t[:-1, 2:]) / DT
    stamp = start + torch.arange(steps, dtype=torch.float64) * DT
    return Stream(stamp, q[:-1], qd[:-1], (qd[1:] - qd[:-1]) / DT, tau[:-1],
                  states_t[:-1, :2], states_t[:-1, 2:], clean_qdd, tau_t[:-1])


@dataclass(frozen=True)
class Plant:
    """Rigid parameters plus joint springs ½k(q − r)² + ¼k₃(q − r)⁴ (``hardening`` k₃: the
    stiffening of cables and harmonic drives, a quartic potential), viscous b·q̇ and Coulomb
    c·sign(q̇), and cogging a(1 − cos p·q) (``cogging`` a [J] with ``cogging_periods`` p per
    revolution: the detent torque of a direct-drive motor, a periodic potential whose frequency
    the default grammar lacks)."""

    params: pendulum.PendulumParams = pendulum.PendulumParams()
    stiffness: tuple[float, float] = (0.0, 0.0)
    rest: tuple[float, float] = (0.0, 0.0)
    viscous: tuple[float, float] = (0.0, 0.0)
    coulomb: tuple[float, float] = (0.0, 0.0)
    hardening: tuple[float, float] = (0.0, 0.0)  # k₃ [N·m/rad³]
    cogging: tuple[float, float] = (0.0, 0.0)  # a [J]
    cogging_periods: int = 5

    @property
    def elements(self) -> pendulum.JointElements:
        """The passive elements the simulator has too (all but the hardening)."""
        return pendulum.JointElements(self.stiffness, self.rest, self.viscous, self.coulomb, self.cogging,
                                      self.cogging_periods)

    def extra_torque(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """What the motor must add to the rigid inverse dynamics (SPEC §2b)."""
        k3, r = (torch.tensor(v, dtype=torch.float64) for v in (self.hardening, self.rest))
        return self.elements.torque(q, qd) + k3 * (q - r) ** 3

    def inverse_dynamics(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        return pendulum.inverse_dynamics(q, qd, qdd, self.params) + self.extra_torque(q, qd)

    def true_terms(self) -> TermModel:
        """The plant's L and D in library terms (:func:`terms.true_pendulum_terms`), the hardening
        potential −¼k₃(q − r)⁴ expanded into powers of q (the constant dropped)."""
        rigid = true_pendulum_terms(self.params, self.elements)
        coefficients = dict(zip(rigid.library.columns, rigid.coefficients.tolist()))
        for joint, (k3, r) in enumerate(zip(self.hardening, self.rest)):
            for power in range(1, 5) if k3 else ():
                term = Term((0, 0), "one", (0, 0), tuple(power * int(i == joint) for i in range(2)))
                value = -0.25 * k3 * math.comb(4, power) * (-r) ** (4 - power)
                if value:
                    coefficients[term] = coefficients.get(term, 0.0) + value
        columns = list(coefficients)
        library = TermLibrary([c for c in columns if isinstance(c, Term)], [c for c in columns if isinstance(c, Force)])
        return TermModel(library, torch.tensor([coefficients[c] for c in library.columns], dtype=torch.float64))


def simulate_structure(seconds: float, params: pendulum.PendulumParams = pendulum.PendulumParams(), *,
                       stiffness: tuple[float, float] = (0.0, 0.0), rest: tuple[float, float] = (0.0, 0.0),
                       viscous: tuple[float, float] = (0.0, 0.0), coulomb: tuple[float, float] = (0.0, 0.0),
                       hardening: tuple[float, float] = (0.0, 0.0), seed: int = 0, change_at: float = math.inf,
                       changed: Plant | None = None) -> Stream:
    """Clean samples of the pendulum with joint springs and friction, stepped with the
    simulator's own scheme (semi-implicit Euler: q̇ first, then q with the new q̇) from the
    ground-truth forward dynamics, so each sample obeys τ = ID + k(q − r) + b q̇ + c sign q̇
    exactly (+ k₃(q − r)³ with ``hardening``). At ``change_at`` the plant becomes ``changed``
    with the state continuous."""
    plant = Plant(params, stiffness, rest, viscous, coulomb, hardening)
    excitation = MultiSine.from_seed(seed, 1.0, 0.2)
    steps = round(seconds / DT)
    q, qd = (torch.tensor(v, dtype=torch.float64) for v in excitation.sample(0.0)[:2])
    rows = []
    for step in range(steps + 1):
        current = changed if changed is not None and step * DT >= change_at else plant
        q_d, qd_d, qdd_d = (torch.tensor(v, dtype=torch.float64) for v in excitation.sample(step * DT))
        feedforward = current.inverse_dynamics(q_d, qd_d, qdd_d)
        tau = feedforward + 200.0 * (q_d - q) + 40.0 * (qd_d - qd)
        rows.append(torch.cat((q, qd, tau)))
        drive = tau - current.extra_torque(q, qd)
        qd = qd + DT * pendulum.forward_dynamics(q, qd, drive, current.params)
        q = q + DT * qd
    data = torch.stack(rows)
    q, qd, tau = data[:, :2], data[:, 2:4], data[:, 4:]
    qdd = (qd[1:] - qd[:-1]) / DT
    stamp = torch.arange(steps, dtype=torch.float64) * DT
    return Stream(stamp, q[:-1], qd[:-1], qdd, tau[:-1], q[:-1], qd[:-1], qdd, tau[:-1])


SEGMENT_GAP = 1.0  # seconds between the segments of a sampled recording


def sampled_motion(rate: float, segments: Sequence[float], *, derivatives: str = "exact", seed: int = 0,
                   params: pendulum.PendulumParams = pendulum.PendulumParams(),
                   base_frequency: float = 0.2) -> Stream:
    """A recording of a continuous-time robot, not of our simulator's steps: the true pendulum
    moving along a multi-sine (a new one per segment, harmonics 1..5 of ``base_frequency``),
    sampled at ``rate`` Hz in segments of the given durations [s], ``SEGMENT_GAP`` apart, with
    τ its exact inverse dynamics at each sample. ``derivatives`` "exact": q̇ and q̈ analytic;
    "gradient": made from the sampled q by numpy.gradient (central differences), as public
    data sets do, τ then being the inverse dynamics of those. ``qdd`` is the q̈ a table of it
    carries; the clean fields equal the recorded ones."""
    if derivatives not in ("exact", "gradient"):
        raise ValueError(f"derivatives must be 'exact' or 'gradient', not {derivatives!r}")
    parts, start = [], 0.0
    for index, duration in enumerate(segments):
        excitation = MultiSine.from_seed(seed + index, 1.0, base_frequency)
        a, phi = np.array(excitation.amplitudes), np.array(excitation.phases)
        omega = 2.0 * math.pi * base_frequency * np.arange(1, a.shape[1] + 1)
        t = np.arange(round(duration * rate)) / rate
        angle = omega * t[:, None, None] + phi
        q = (a * np.sin(angle)).sum(-1)
        qd, qdd = (a * omega * np.cos(angle)).sum(-1), (-a * omega**2 * np.sin(angle)).sum(-1)
        if derivatives == "gradient":
            qd = np.gradient(q, t, axis=0)
            qdd = np.gradient(qd, t, axis=0)
        q, qd, qdd = (torch.tensor(x, dtype=torch.float64) for x in (q, qd, qdd))
        parts.append((torch.tensor(start + t, dtype=torch.float64), q, qd, qdd,
                      pendulum.inverse_dynamics(q, qd, qdd, params)))
        start += duration + SEGMENT_GAP
    stamp, q, qd, qdd, tau = (torch.cat([part[i] for part in parts]) for i in range(5))
    return Stream(stamp, q, qd, qdd, tau, q, qd, qdd, tau)


def samples(stream: Stream, start: int, stop: int) -> list[JointStateSample]:
    """Samples ``start:stop`` of a stream as the learner's assembler would produce them."""
    return [JointStateSample(float(stream.stamp[k]), tuple(stream.q[k].tolist()), tuple(stream.qd[k].tolist()),
                             tuple(stream.qdd[k].tolist()), tuple(stream.tau[k].tolist())) for k in range(start, stop)]


def deliver(learner: OnlineLearner, stream: Stream, chunk: int, train_steps: int = 0) -> Iterator[float]:
    """Drive a learner over a stream as its node does, ``chunk`` samples at a time: the samples
    arrive, their integral rows are observed and the network (when enabled) takes up to
    ``train_steps`` steps. Yields the chunk's newest stamp; the caller selects then, as the
    node's timer does."""
    for start in range(0, len(stream.stamp), chunk):
        batch = samples(stream, start, min(start + chunk, len(stream.stamp)))
        for sample in batch:
            learner.buffer.push(sample)
        learner.observe()
        for _ in range(train_steps if learner.config.network_enabled else 0):
            learner.train_step()
        yield batch[-1].stamp
