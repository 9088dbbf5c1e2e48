"""``syrenets-ros bench hostile``: what each hostile input of issue 12 costs and how it ends.

Model payloads go through the predictor's :class:`ModelServer` (and the amplification payload
also through the checkpoint reader): the verdict, the reason, the CPU time of the refusal and
the peak-memory growth. The stream checks run on a PyBullet run of the pendulum under PD
tracking of the default multi-sine, with Gaussian noise of ``--noise`` added to the published
q and q̇: how many honest samples pass, and how many of 300 forged states (stamped 10⁴ s ahead,
5× the torque) do. The consistency noise floor is the true model's window-mean torque error
on the same noisy states (what ``consistency_tolerance`` must exceed).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, PendulumParams
from syrenets_ros.learning.syrenet import SyReNetConfig
from syrenets_ros.learning.terms import Term, TermModel, true_pendulum_terms
from syrenets_ros.online import snapshot
from syrenets_ros.online.serving import PREDICTOR_PARAMETERS, ModelServer, window_torque_error
from syrenets_ros.online.snapshot import RunId, SnapshotError, decode_model, encode_model
from syrenets_ros.online.stream import Batch, SampleAssembler, StreamChecks
from syrenets_ros.plant.control import pd_torque
from syrenets_ros.plant.excitation import MultiSine
from syrenets_ros.plant.settings import SimSettings
from syrenets_ros.plant.simulator import Simulator

JOINTS = list(JOINT_NAMES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=5000, help="simulated 1 ms steps for the stream checks")
    parser.add_argument("--noise", type=float, nargs=2, default=(1e-4, 1e-3), metavar=("SIGMA_Q", "SIGMA_QD"),
                        help="sensor noise added to the published q [rad] and q̇ [rad/s]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("runs/bench_hostile.json"), help="output JSON path")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _payloads(true: TermModel, run: RunId) -> dict[str, str]:
    def envelope(model: TermModel, version: int, run_id: RunId = run) -> str:
        return encode_model(model, model_version=version, joint_names=JOINTS, metrics={}, run_id=run_id)

    huge = SyReNetConfig(layers=8, heads=64, ae_hidden=1024, latent=256, head_hidden=1024).to_json()
    coefficients = true.coefficients.clone()
    coefficients[true.terms.index(Term((2, 0), "one", (0, 0)))] = 1e307
    return {
        "nested JSON, 10^4 levels": '{"format":' + "[" * 10_000 + "]" * 10_000 + "}",
        "amplification (syrenet, ~20 GiB config)": json.dumps(
            {"format": snapshot.FORMAT, "schema_version": snapshot.SCHEMA_VERSION, "kind": "syrenet",
             "run_id": str(run), "model_version": 9, "joint_names": JOINTS, "metrics": {},
             "model": {"config": huge, "parameters": {}}}),
        "true L x1000": envelope(TermModel(true.library, true.coefficients * 1000), 2),
        "1e307 coefficient": envelope(TermModel(true.library, coefficients), 3),
        "replay (version 1 again)": envelope(true, 1),
        "older run": envelope(true, 99, RunId(run.started_ns - 1, "0badc0de")),
    }


def _models() -> list[list[str]]:
    true = true_pendulum_terms(PendulumParams())
    run = RunId.new()
    server = ModelServer(JOINTS)
    accepted, reason = server.offer(encode_model(true, model_version=1, joint_names=JOINTS, metrics={}, run_id=run))
    assert accepted, reason
    rows = []
    for name, payload in _payloads(true, run).items():
        before, start = _peak_mib(), time.process_time()
        accepted, reason = server.offer(payload)
        cpu_ms = (time.process_time() - start) * 1e3
        rows.append([name, f"{len(payload)}", "served" if accepted else "refused", f"{cpu_ms:.1f}",
                     f"{_peak_mib() - before:.0f}", reason[:90]])
    payload = _payloads(true, run)["amplification (syrenet, ~20 GiB config)"]
    before, start = _peak_mib(), time.process_time()
    try:
        decode_model(payload)
        verdict, reason = "decoded", ""
    except SnapshotError as error:
        verdict, reason = "refused", str(error)
    rows.append(["  same, as a checkpoint file", f"{len(payload)}", verdict,
                 f"{(time.process_time() - start) * 1e3:.1f}", f"{_peak_mib() - before:.0f}", reason[:90]])
    assert torch.equal(server.current.model.coefficients, true.coefficients)
    return rows


def _simulate(steps: int, noise: tuple[float, float], seed: int) -> list[tuple[float, list, list, list]]:
    settings, excitation = SimSettings(), MultiSine.from_seed(0)
    q0, qd0, _ = excitation.sample(0.0)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    with Simulator(settings.params, 1e-3, q0, qd0) as sim:
        for k in range(steps):
            q, qd = sim.state()
            q_d, qd_d, _ = excitation.sample(k * 1e-3)
            tau = pd_torque(settings, q, qd, q_d, qd_d, None)
            jitter = [noise[0] * torch.randn(2, generator=generator, dtype=torch.float64),
                      noise[1] * torch.randn(2, generator=generator, dtype=torch.float64)]
            rows.append((k * 1e-3, (torch.tensor(q) + jitter[0]).tolist(), (torch.tensor(qd) + jitter[1]).tolist(), tau))
            sim.step(tau)
    return rows


def _stream(steps: int, noise: tuple[float, float], seed: int) -> list[list[str]]:
    rows = _simulate(steps, noise, seed)
    now = [0.0]
    checks = StreamChecks(lambda: now[0], stamp_tolerance=2.0, position_noise=1e-4, velocity_noise=1e-3)
    assembler = SampleAssembler(JOINTS, 1e-3, checks=checks)
    samples = []
    for stamp, q, qd, tau in rows:
        now[0] = stamp
        sample = assembler.add(stamp, JOINTS, q, qd, tau)
        if sample:
            samples.append(sample)
    honest = (assembler.accepted, dict(assembler.rejected))
    for k, (_, q, qd, tau) in enumerate(rows[-300:]):
        assembler.add(1e4 + k * 1e-3, JOINTS, q, qd, [5 * t for t in tau])
    forged_accepted = assembler.accepted - honest[0]
    true = true_pendulum_terms(PendulumParams())
    window = PREDICTOR_PARAMETERS.default("consistency_window")
    errors = [window_torque_error(true, Batch.from_samples(samples[i:i + window]))
              for i in range(0, len(samples) - window, window)]
    return [["honest samples accepted", f"{honest[0]} of {len(rows) - 1}", f"rejected: {honest[1] or 'none'}"],
            ["forged samples accepted", f"{forged_accepted} of 300", f"off_clock: {assembler.rejected['off_clock']}"],
            [f"true model window-mean error ({window} states)",
             f"median {statistics.median(errors):.3g}, max {max(errors):.3g} N·m",
             f"consistency_tolerance {PREDICTOR_PARAMETERS.default('consistency_tolerance'):g} N·m"]]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    payload_header, payloads = ["payload", "bytes", "verdict", "CPU ms", "peak +MiB", "reason"], _models()
    print("model payloads offered to the predictor's ModelServer (serving the true model v1):")
    print(_table(payload_header, payloads))
    stream_header, stream = ["check", "result", "detail"], _stream(args.steps, tuple(args.noise), args.seed)
    print(f"\nstream checks, PyBullet {args.steps} steps under PD, noise σ_q={args.noise[0]:g} rad, "
          f"σ_q̇={args.noise[1]:g} rad/s (declared sensor_noise 1e-4, 1e-3):")
    print(_table(stream_header, stream))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"payloads": [dict(zip(payload_header, row)) for row in payloads],
                                     "stream": [dict(zip(stream_header, row)) for row in stream]}, indent=2))
    print(f"\nwrote {args.json}")
    return 0
