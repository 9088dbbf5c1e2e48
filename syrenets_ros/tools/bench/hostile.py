"""``syrenets-ros bench hostile``: what each hostile input of issues 12 and 23 costs and how it ends.

The stream is a PyBullet run of the pendulum under PD tracking of the default multi-sine, with
Gaussian noise of ``--noise`` added to the published q and q̇, checked as the nodes check it
(clock, timeline, order, kinematics). Model payloads go through the predictor's
:class:`ModelServer` serving the true model, with the last ``consistency_history`` seconds of
that run as the measured history (and the amplification payload also through the checkpoint
reader): the verdict, the reason, the CPU time of the whole check and of its random probes, and
the peak-memory growth. Timed attacks are offered after the robot came to rest (the newest
states then agree with any multiple of the true model). The stream rows: how many honest
samples pass, how many of 300 forged states (stamped 10⁴ s ahead, 5× the torque) do, how many
of a flood stamped 1 s ahead beside the honest stream do, and how many honest samples form
while single states stamped 0.5–2 s ahead arrive every 0.9 s. The consistency noise floor is the
true model's window-mean torque error on the same noisy states. The offline rows: each bad input
of issue 23 given to `learn`, `predict` or `record` as a user gives it (a process of its own,
killed after ``OFFLINE_TIMEOUT`` s so that a hang shows): exit code, the one line on stderr, and
the process's CPU time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, PendulumParams
from syrenets_ros.learning.syrenet import SyReNetConfig
from syrenets_ros.learning.terms import Term, TermLibrary, TermModel, true_pendulum_terms
from syrenets_ros.online import snapshot
from syrenets_ros.online.serving import PREDICTOR_PARAMETERS, ModelServer, warm_up, window_torque_error
from syrenets_ros.online.snapshot import RunId, SnapshotError, decode_model, encode_model
from syrenets_ros.online.stream import Batch, JointStateSample, SampleAssembler, StreamChecks
from syrenets_ros.plant.control import pd_torque
from syrenets_ros.plant.excitation import MultiSine
from syrenets_ros.plant.settings import SimSettings
from syrenets_ros.plant.simulator import Simulator

JOINTS = list(JOINT_NAMES)
DT = 1e-3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=5000, help="simulated 1 ms steps (at least 1000: the "
                        "predictor needs 4 windows of 128 measured states to check a model)")
    parser.add_argument("--noise", type=float, nargs=2, default=(1e-4, 1e-3), metavar=("SIGMA_Q", "SIGMA_QD"),
                        help="sensor noise added to the published q [rad] and q̇ [rad/s]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--offline", action=argparse.BooleanOptionalAction, default=True,
                        help="also give each bad offline input to learn / predict / record (about a minute)")
    parser.add_argument("--json", type=Path, default=Path("runs/bench_hostile.json"), help="output JSON path")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def flipped_gravity(model: TermModel) -> TermModel:
    """``model`` with its potential's sign flipped: exact inertia, gravity upside down."""
    coefficients = model.coefficients.clone()
    for i, term in enumerate(model.terms):
        if sum(term.velocity) == 0:
            coefficients[i] = -coefficients[i]
    return TermModel(model.library, coefficients)


def bump(model: TermModel, center: tuple[float, float] = (math.pi, math.pi), height: float = 500.0) -> TermModel:
    """``model`` plus ``height`` · Π_i ((1 + cos(q_i − c_i))/2)^8, a potential bump of
    frequencies ≤ 8 (the grammar's limit), for the true pendulum: |τ| ~620 N·m at its centre,
    > 500 N·m on 2.1 % of the q plane, yet within 1e-3 N·m of the truth where a tracking run
    goes and within the limit on the 64 fixed probes (issue 23's model wrong at one spot)."""
    half = 8
    # cos^16(x/2) = 2^-16 [C(16,8) + 2 Σ_k C(16, 8 - k) cos(k x)]
    weights = [math.comb(2 * half, half - k) * (1 if k == 0 else 2) / 2 ** (2 * half) for k in range(half + 1)]
    coefficients = dict(zip(model.terms, model.coefficients.tolist()))

    def add(function: str, angle: tuple[int, int], value: float) -> None:
        if angle[0] < 0 or (angle[0] == 0 and angle[1] < 0):  # canonical: first non-zero entry positive
            angle, value = (-angle[0], -angle[1]), value if function == "cos" else -value
        term = Term((0, 0), function, angle)
        coefficients[term] = coefficients.get(term, 0.0) + value

    for k, wk in enumerate(weights):
        for m, wm in enumerate(weights):
            if k == 0 and m == 0:
                continue  # a constant: no torque
            # cos(k(x1 − c1)) cos(m(x2 − c2)) = ½ Σ± cos(k x1 ± m x2 − (k c1 ± m c2))
            for sign in ((1,) if k == 0 or m == 0 else (1, -1)):
                share = height * wk * wm * (0.5 if k and m else 1.0)
                phase = k * center[0] + sign * m * center[1]
                add("cos", (k, sign * m), share * math.cos(phase))
                add("sin", (k, sign * m), share * math.sin(phase))
    terms = list(coefficients)
    return TermModel(TermLibrary(terms), torch.tensor([coefficients[t] for t in terms], dtype=torch.float64))


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
        "wrong at one spot (bump, fixed probes pass)": envelope(bump(true), 4),
        "true L x2.5, offered at rest (timed)": envelope(TermModel(true.library, true.coefficients * 2.5), 5),
        "true L x3, offered at rest (timed)": envelope(TermModel(true.library, true.coefficients * 3), 6),
        "gravity flipped, offered at rest (timed)": envelope(flipped_gravity(true), 7),
    }


def _offer(server: ModelServer, name: str, payload: str, measured: Batch | None) -> list[str]:
    before, start = _peak_mib(), time.process_time()
    accepted, reason = server.offer(payload, measured)
    cpu_ms = (time.process_time() - start) * 1e3
    verdict = "served" if accepted else "held" if server.pending else "refused"
    probes_ms = f"{server.probe_cpu_s * 1e3:.1f}" if server.probe_cpu_s else "-"  # "-": refused before
    return [name, f"{len(payload)}", verdict, f"{cpu_ms:.1f}", probes_ms,
            f"{_peak_mib() - before:.0f}", reason[:90]]


def _models(moving: Batch, at_rest: Batch) -> list[list[str]]:
    true = true_pendulum_terms(PendulumParams())
    run = RunId.new()
    server = ModelServer(JOINTS)
    accepted, reason = server.offer(encode_model(true, model_version=1, joint_names=JOINTS, metrics={}, run_id=run),
                                    moving)
    assert accepted, reason
    rows = [_offer(server, name, payload, at_rest) for name, payload in _payloads(true, run).items()]
    payload = _payloads(true, run)["amplification (syrenet, ~20 GiB config)"]
    before, start = _peak_mib(), time.process_time()
    try:
        decode_model(payload)
        verdict, reason = "decoded", ""
    except SnapshotError as error:
        verdict, reason = "refused", str(error)
    rows.insert(2, ["  same, as a checkpoint file", f"{len(payload)}", verdict,
                 f"{(time.process_time() - start) * 1e3:.1f}", "-", f"{_peak_mib() - before:.0f}", reason[:90]])
    assert torch.equal(server.current.model.coefficients, true.coefficients)
    # An empty predictor (restarted): a 3×-heavy first model, and a learner's initial model
    # published before any joint state (held), then checked when the robot moves.
    heavy = encode_model(TermModel(true.library, true.coefficients * 3), model_version=1, joint_names=JOINTS,
                         metrics={}, run_id=RunId.new())
    empty = ModelServer(JOINTS, max_torque=1.0e3)  # so that the probes' bound does not decide it
    rows.append(_offer(empty, "empty predictor: true L x3 (limit 1000 N·m)", heavy, moving))
    empty = ModelServer(JOINTS)
    initial = encode_model(true, model_version=1, joint_names=JOINTS, metrics={}, run_id=RunId.new())
    rows.append(_offer(empty, "empty predictor: initial model, no states yet", initial, None))
    start = time.process_time()
    accepted, reason = empty.check_pending(moving)
    rows.append(["  same, once the robot moves", f"{len(initial)}", "served" if accepted else "refused",
                 f"{(time.process_time() - start) * 1e3:.1f}", "-", "0", reason[:90]])
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


def _checked(rows: list, forged_every: int = 0, lead: float = 0.0, factor: float = 1.0
             ) -> tuple[SampleAssembler, list[JointStateSample], int]:
    """The rows through the nodes' checks (a clock at each row's stamp); every ``forged_every``
    rows a forged copy of the row stamped ``lead`` s ahead (0.5–2 s when ``lead`` is negative)
    with ``factor`` × its torque. Returns the assembler, the samples, the forged states sent."""
    now = [0.0]
    checks = StreamChecks(lambda: now[0], stamp_tolerance=2.0, position_noise=1e-4, velocity_noise=1e-3)
    assembler = SampleAssembler(JOINTS, DT, checks=checks)
    samples, forged = [], 0
    for k, (stamp, q, qd, tau) in enumerate(rows):
        now[0] = stamp
        sample = assembler.add(stamp, JOINTS, q, qd, tau)
        if sample:
            samples.append(sample)
        if forged_every and k % forged_every == forged_every // 2:
            ahead = lead if lead >= 0 else 0.5 + 1.5 * k / len(rows)
            forged += 1
            if assembler.add(stamp + ahead, JOINTS, q, qd, [factor * t for t in tau]):
                samples.append(None)  # a forged sample: counted below
    return assembler, samples, forged


def _stream(rows: list) -> tuple[list[list[str]], list[JointStateSample]]:
    assembler, samples, _ = _checked(rows)
    honest = (assembler.accepted, dict(assembler.rejected))
    for k, (_, q, qd, tau) in enumerate(rows[-300:]):
        assembler.add(1e4 + k * DT, JOINTS, q, qd, [5 * t for t in tau])
    forged_accepted = assembler.accepted - honest[0]
    flood, flood_samples, flood_sent = _checked(rows, forged_every=1, lead=1.0, factor=3.0)
    blind, blind_samples, blind_sent = _checked(rows, forged_every=900, lead=-1.0, factor=5.0)
    true = true_pendulum_terms(PendulumParams())
    window = PREDICTOR_PARAMETERS.default("consistency_window")
    errors = [window_torque_error(true, Batch.from_samples(samples[i:i + window]))
              for i in range(0, len(samples) - window, window)]
    return [["honest samples accepted", f"{honest[0]} of {len(rows) - 1}", f"rejected: {honest[1] or 'none'}"],
            ["forged samples accepted (10^4 s ahead)", f"{forged_accepted} of 300",
             f"off_clock: {assembler.rejected['off_clock']}"],
            ["forged flood 1 s ahead, 3x torque, beside the stream",
             f"{flood_samples.count(None)} of {flood_sent} forged, {flood.accepted - flood_samples.count(None)} "
             f"of {len(rows) - 1} honest", f"off_timeline: {flood.rejected['off_timeline']}"],
            ["one state 0.5-2 s ahead every 0.9 s",
             f"{blind_samples.count(None)} of {blind_sent} forged, {blind.accepted - blind_samples.count(None)} "
             f"of {len(rows) - 1} honest", f"off_timeline: {blind.rejected['off_timeline']}"],
            [f"true model window-mean error ({window} states)",
             f"median {statistics.median(errors):.3g}, max {max(errors):.3g} N·m",
             f"consistency_tolerance {PREDICTOR_PARAMETERS.default('consistency_tolerance'):g} N·m"]], samples


def _histories(samples: list[JointStateSample]) -> tuple[Batch, Batch]:
    """The predictor's history after the run (its last consistency_history seconds), and the
    same after the robot then hung still for 0.3 s (a gap of 10 ms between)."""
    length = round(PREDICTOR_PARAMETERS.default("consistency_history") / DT)
    moving = samples[-length:]
    zero = (0.0, 0.0)
    rest = [JointStateSample(moving[-1].stamp + 0.01 + k * DT, zero, zero, zero, zero) for k in range(300)]
    return Batch.from_samples(moving), Batch.from_samples((moving + rest)[-length:])


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def mcap_record_beyond_file(folder: Path, length: int = 2**62) -> None:
    """Issue 23's lying MCAP: in the bag in ``folder``, the summary's chunk index record
    declares ``length`` bytes (the reader allocated what it declared: MemoryError)."""
    from rosbags.rosbag2.storage_mcap import McapReader

    [mcap] = folder.glob("*.mcap")
    reader = McapReader(mcap)
    reader.open()
    chunk = reader.chunks[0]
    reader.close()
    data = bytearray(mcap.read_bytes())
    record = data.index(struct.pack("<QQQQ", chunk.message_start_time, chunk.message_end_time,
                                    chunk.chunk_start_offset, chunk.chunk_length)) - 9
    assert data[record] == 0x08, "the chunk index record"
    data[record + 1:record + 9] = struct.pack("<Q", length)
    mcap.write_bytes(bytes(data))


def mcap_chunk_bomb(path: Path, expands_to: int, messages: int = 100) -> None:
    """A bag at ``path`` whose zstd chunk declares the size of its ``messages`` JointStates but
    expands to ``expands_to`` more bytes of zeros (a few kB compressed)."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    from syrenets_ros.offline.bag import JOINT_STATE, add_topic, joint_state_cdr, zstd
    from syrenets_ros.tools.bench.bags import exact_states

    def bomb(chunk: bytes) -> bytes:
        compressor, zeros = zstd.ZstdCompressor(), bytes(1 << 20)
        parts = [compressor.compress(chunk)] + [compressor.compress(zeros) for _ in range(expands_to >> 20)]
        return b"".join(parts) + compressor.flush()

    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()
    connection = add_topic(writer, "/joint_states", JOINT_STATE)
    for stamp, *state in exact_states(messages):
        writer.write(connection, stamp, joint_state_cdr(stamp, *state))
    writer.storage.compressor = bomb  # the chunk is compressed when the bag closes
    writer.close()


OFFLINE_TIMEOUT = 120.0  # s a refusal may take before it counts as a hang


def _offline_inputs(folder: Path) -> list[tuple[str, list[str]]]:
    """(class, argv) of each bad offline input, its files made in ``folder``."""
    from syrenets_ros.offline.bag import write_joint_states
    from syrenets_ros.tools.bench.bags import exact_states

    states = list(exact_states(3000))
    write_joint_states(folder / "bag", states)
    model = folder / "model.json"
    model.write_text(encode_model(true_pendulum_terms(PendulumParams()), model_version=1, joint_names=JOINTS,
                                  metrics={}))
    os.mkfifo(folder / "fifo")
    write_joint_states(folder / "cut", states)
    [mcap] = (folder / "cut").glob("*.mcap")
    mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    write_joint_states(folder / "counts", states)
    metadata = folder / "counts" / "metadata.yaml"
    metadata.write_text(metadata.read_text().replace("message_count: 3000", "message_count: -5", 1))
    write_joint_states(folder / "nan", [(t, n, q, qd, [math.nan] * 2 if k % 20 == 10 else tau)
                                        for k, (t, n, q, qd, tau) in enumerate(states)])
    header = ",".join(f"{kind}{j}" for kind in ("q", "qd", "qdd") for j in (1, 2, 3))
    (folder / "three.csv").write_text(header + "\n" + ",".join(["0.1"] * 9) + "\n")
    (folder / "huge.csv").write_text("q1,q2,qd1,qd2,qdd1,qdd2\n" + "1" * (1 << 18) + ",0,0,0,0,0\n")
    (folder / "partial.csv").write_text("t,q1,q2,qd1,qd2,qdd1,tau1,tau2\n0,0,0,0,0,0,0,0\n0.1,0,0,0,0,0,0,0\n")
    write_joint_states(folder / "liar", states)
    mcap_record_beyond_file(folder / "liar")
    mcap_chunk_bomb(folder / "bomb", 1 << 30)
    bag, out = str(folder / "bag"), str(folder / "out.csv")
    return [
        ("FIFO as BAG", ["learn", str(folder / "fifo")]),
        ("FIFO as STATES", ["predict", str(model), str(folder / "fifo"), "-o", out]),
        ("FIFO as MODEL", ["predict", str(folder / "fifo"), str(folder / "three.csv"), "-o", out]),
        ("truncated MCAP", ["learn", str(folder / "cut")]),
        ("metadata.yaml count -5", ["learn", str(folder / "counts")]),
        ("MCAP record declaring 2^62 bytes", ["learn", str(folder / "liar")]),
        ("MCAP chunk expanding 1 GiB past its size", ["learn", str(folder / "bomb")]),
        ("--start nan", ["learn", bag, "--start", "nan"]),
        ("--end inf", ["learn", bag, "--end", "inf"]),
        ("--start 1e300", ["learn", bag, "--start", "1e300"]),
        ("9 joints (grammar: 8)", ["learn", bag, "--joints", ",".join(f"j{i}" for i in range(9))]),
        ("CSV cell above the csv limit", ["predict", str(model), str(folder / "huge.csv"), "-o", out]),
        ("3-joint CSV, 2-joint model", ["predict", str(model), str(folder / "three.csv"), "-o", out]),
        ("table with qdd1 only", ["learn", str(folder / "partial.csv")]),
        ("record --duration inf", ["record", str(folder / "rec"), "--duration", "inf"]),
        ("record into a file's folder", ["record", str(folder / "three.csv" / "bag"), "--duration", "1"]),
        ("5 % NaN efforts (learns)", ["learn", str(folder / "nan"), "--no-network", "-o", str(folder / "nan.json")]),
    ]


def _offline(folder: Path) -> list[list[str]]:
    """Each offline input run as a user runs it: verdict, what it said, CPU."""
    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    rows = []
    for name, argv in _offline_inputs(folder):
        started = children_cpu()
        process = subprocess.Popen([sys.executable, "-m", "syrenets_ros.tools.cli", *argv], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            out, err = process.communicate(timeout=OFFLINE_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            rows.append([name, "HANG", "", f"killed after {OFFLINE_TIMEOUT:g} s"])
            continue
        cpu = children_cpu() - started
        lines = err.strip().splitlines()
        said = lines[-1] if lines else next((line for line in out.splitlines() if "rejected:" in line), "")
        verdict = {0: "learned" if argv[0] == "learn" else "ok", 2: "refused"}.get(process.returncode,
                                                                                  f"exit {process.returncode}")
        if "Traceback" in err or len(lines) > 1:
            verdict += " (traceback!)" if "Traceback" in err else f" ({len(lines)} lines)"
        rows.append([name, verdict, f"{cpu:.1f}", said.replace("syrenets-ros ", "")[:150]])
    return rows


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    warm_up()  # as the predictor does: the first check would otherwise pay torch's lazy imports
    if args.steps < 1000:
        raise SystemExit("syrenets-ros bench hostile: --steps must be at least 1000 (the predictor checks a model "
                         "on 4 windows of 128 measured states)")
    rows = _simulate(args.steps, tuple(args.noise), args.seed)
    stream_header, (stream, samples) = ["check", "result", "detail"], _stream(rows)
    payload_header = ["payload", "bytes", "verdict", "CPU ms", "probes CPU ms", "peak +MiB", "reason"]
    payloads = _models(*_histories(samples))
    print(f"model payloads offered to the predictor's ModelServer (serving the true model v1; history: the last "
          f"{PREDICTOR_PARAMETERS.default('consistency_history'):g} s of the run below, then 0.3 s at rest):")
    print(_table(payload_header, payloads))
    print(f"\nstream checks, PyBullet {args.steps} steps under PD, noise σ_q={args.noise[0]:g} rad, "
          f"σ_q̇={args.noise[1]:g} rad/s (declared sensor_noise 1e-4, 1e-3):")
    print(_table(stream_header, stream))
    offline_header = ["offline input", "verdict", "CPU s", "what it said (stderr, or learn's rejection counts)"]
    with tempfile.TemporaryDirectory() as scratch:
        offline = _offline(Path(scratch)) if args.offline else []
    if offline:
        print("\noffline inputs, each to the CLI in a process of its own:")
        print(_table(offline_header, offline))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"payloads": [dict(zip(payload_header, row)) for row in payloads],
                                     "stream": [dict(zip(stream_header, row)) for row in stream],
                                     "offline": [dict(zip(offline_header, row)) for row in offline]}, indent=2))
    print(f"\nwrote {args.json}")
    return 0
