"""What the online experiment reports: its result record, phase metrics, the summary table
and the plot. Pure bookkeeping over the monitor's series; no ROS import."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning.terms import true_pendulum_terms
from syrenets_ros.plotting import saved_figure

if TYPE_CHECKING:
    from syrenets_ros.plant.settings import SimSettings
    from syrenets_ros.ros.monitor import ForecastRecord, Monitor

SIM = "pendulum_sim"


def rms(series: list[tuple[float, float]], start: float, end: float) -> float:
    values = [v for t, v in series if start <= t < end]
    return math.sqrt(sum(v * v for v in values) / len(values)) if values else math.nan


def _rollingrms(series: list[tuple[float, float]], width: float) -> list[tuple[float, float]]:
    """RMS over consecutive windows of `width` sim seconds: (window centre, rms)."""
    buckets: dict[int, list[float]] = {}
    for t, v in series:
        buckets.setdefault(int(t // width), []).append(v * v)
    return [((b + 0.5) * width, math.sqrt(sum(vs) / len(vs))) for b, vs in sorted(buckets.items())]


@dataclass
class ExperimentResult:
    timeline: dict
    params_before: dict
    params_after: dict
    t_feedforward_on: float
    t_swap: float
    tracking_rms: dict[str, float]
    torque_rmse: dict[str, float]
    adaptation_time: float
    learner_change_stamps: list[str]
    equation: str
    true_equation: str
    node_exit_codes: dict[str, int]
    nodes_died: list[str]
    diagnostics: dict[str, dict[str, str]]
    plot: str = ""
    real_time_factor: float = math.nan  # asked of the simulator
    real_time_factor_achieved: float = math.nan  # sim s per wall s, from feed-forward on to the end
    # CPU seconds per sim second of each node process (and the experiment's own), same span.
    cpu_per_sim_second: dict[str, float] = field(default_factory=dict)
    # Per phase, the feed-forward the simulator actually applied (see delivered_feedforward).
    delivered_ff: dict[str, dict[str, float]] = field(default_factory=dict)
    # The learner's largest reported lag behind the stream [s] (its /diagnostics lag_s), over
    # the run and from its first model on (start-up over).
    learner_lag_max_s: float = math.nan
    learner_lag_max_after_first_model_s: float = math.nan
    first_model_s: float = math.nan  # sim time of the first published equation
    # After the swap, per served model (the one from before it first): (sim time it came, FF
    # torque RMSE vs the truth while it served). Issue 20/22: none should be worse than the first.
    served_after_change: list[tuple[float, float]] = field(default_factory=list)
    robot: str = "double_pendulum"  # the simulated robot (a URDF robot's name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def true_equation(settings: SimSettings, digits: int = 4) -> str:
    """The true Lagrangian (SPEC §2, with the joints' springs) and dissipation (§2b), written by
    the same formatter as the learned ones; for a URDF robot, where its truth comes from."""
    if settings.robot_description:
        elements = settings.joint_elements
        return (f"rigid-body dynamics of the {settings.robot.name} URDF (Pinocchio) with {settings.payload_mass:g} kg "
                f"at the flange" + ("" if elements.is_rigid else f"; springs k = {list(elements.stiffness)}, rest "
                                    f"{list(elements.rest_angle)}, viscous b = {list(elements.damping)}, Coulomb c = "
                                    f"{list(elements.friction)}"))
    return true_pendulum_terms(settings.params, settings.joint_elements).equation(digits)


def adaptation_time(torque_error: list[tuple[float, float]], t_swap: float, pre_swap: float,
                     window: float = 0.25) -> float:
    """Sim seconds after the swap until the windowed FF torque RMSE is back within 1.5× the
    pre-swap level and stays there."""
    if not math.isfinite(pre_swap):
        return math.nan
    after = [(t, v) for t, v in torque_error if t >= t_swap]
    windows = _rollingrms([(t - t_swap, v) for t, v in after], window)
    recovered = math.nan
    for centre, value in windows:
        if value <= 1.5 * max(pre_swap, 1e-9):
            if math.isnan(recovered):
                recovered = centre - window / 2
        else:
            recovered = math.nan
    return recovered


def served_after_change(torque_error: list[tuple[float, float]], equations: list[tuple[float, str]],
                        t_swap: float, end: float, shortest: float = 0.25) -> list[tuple[float, float]]:
    """The FF torque RMSE of each stretch between model arrivals after the swap: (start, RMSE),
    the first stretch served by the model from before it (stretches without answers left out).
    A model joins the stretch before it when it arrives within ``shortest`` s of that stretch's
    start (a few samples score nothing) or holds the same equation as the model before it or
    the one served at the swap (standard errors aside): a refit of the old system published
    after the swap, by a selection that ran before the change was seen, is the model from
    before it. Measured: such refits 0.02 and 0.3 s after the swap made later models of the
    combined-change run count as worse than a stretch of the old model too short to drift."""
    def text(equation: str) -> str:
        return re.sub(r"\(±[^)]*\)", "", equation)

    before = [text(equation) for t, equation in equations if t <= t_swap][-1:]
    arrivals, previous = [], before[0] if before else None
    for t, equation in equations:
        if t_swap < t < end and text(equation) not in (previous, *before):
            previous = text(equation)
            if t - (arrivals[-1] if arrivals else t_swap) >= shortest:
                arrivals.append(t)
    bounds = [t_swap] + arrivals + [end]
    stretches = ((a, rms(torque_error, a, b)) for a, b in zip(bounds, bounds[1:]))
    return [(a, value) for a, value in stretches if math.isfinite(value)]


def worse_after_change(stretches: list[tuple[float, float]]) -> int:
    """How many models served after the change did worse than the one from before it."""
    return sum(value > stretches[0][1] for _, value in stretches[1:]) if stretches else 0


def plot(monitor: Monitor, result: ExperimentResult, path: Path) -> Path:
    with saved_figure(path, 110, 3, 1, figsize=(10, 10)) as (fig, axes):
        for ax, series, label in ((axes[0], monitor.tracking, "tracking error |q − q_d| [rad]"),
                                  (axes[1], monitor.torque_error, "feed-forward torque error [N·m]")):
            points = _rollingrms(series, 0.1)
            ax.semilogy([t for t, _ in points], [max(v, 1e-16) for _, v in points])
            ax.set_ylabel(label)
            ax.axvline(result.t_feedforward_on, color="green", linestyle="--", label="feed-forward on")
            ax.axvline(result.t_swap, color="red", linestyle="--", label="link 2 swapped")
            ax.legend(loc="upper right")
            ax.grid(True, which="both", alpha=0.3)
        axes[1].set_xlabel("sim time [s]")
        ax = axes[2]
        if monitor.forecasts and result.robot == "double_pendulum":
            record = monitor.forecasts[-1]
            times = [record.start + o for o in record.offsets]
            truth = true_passive_motion(record)
            for j in range(2):
                ax.plot(times, [p[j] for p in record.positions], "--", label=f"q{j + 1} forecast (learned L, variational)")
                ax.plot(times, truth[:, j], alpha=0.6, label=f"q{j + 1} true passive motion")
            ax.set_title("passive-motion forecast from /syrenets/forecast vs the true Lagrangian from the same state")
            ax.legend(loc="upper right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no forecast received" if result.robot == "double_pendulum" else
                    "forecasts are checked against the double pendulum's Lagrangian only", ha="center",
                    va="center", transform=ax.transAxes)
        ax.set_xlabel("sim time [s]")
        ax.set_ylabel("q [rad]")
    return path


def true_passive_motion(record: ForecastRecord) -> torch.Tensor:
    """What the pendulum would do unforced from the forecast's start, by fine-step RK4 on
    the true Lagrangian, sampled at the forecast's times; shape (points, 2)."""
    from syrenets_ros.dynamics.integrator import rk4_rollout

    fine = 10
    h = (record.offsets[1] - record.offsets[0]) / fine if len(record.offsets) > 1 else 1e-3
    rollout = rk4_rollout(lambda q, qd: pendulum.lagrangian(q, qd, record.params),
                          torch.tensor([record.positions[0]], dtype=torch.float64),
                          torch.tensor([record.initial_velocity], dtype=torch.float64),
                          h, fine * (len(record.offsets) - 1))
    return rollout.q[0, ::fine]


def delivered_feedforward(sim_reports: list[dict[str, str]], start: float, end: float) -> dict[str, float]:
    """The simulator's record of the feed-forward it applied (plant.delivery), combined over
    its report windows that end in [start, end) sim seconds: steps, exact/stale/missing
    fractions, the largest stale age [steps] and the RMS error [N·m] of the applied torque
    against the true inverse dynamics of the system in force. Windows are ~1 s of wall time,
    so a phase's edges are resolved to a window."""
    steps = exact = stale = missing = oldest = 0
    squared = 0.0
    for report in sim_reports:
        count = int(report.get("delivered_ff_steps_window", 0))
        if not count or not start <= float(report["sim_time_s"]) < end:
            continue
        steps += count
        exact += int(report["delivered_ff_exact_window"])
        stale += int(report["delivered_ff_stale_window"])
        missing += int(report["delivered_ff_missing_window"])
        oldest = max(oldest, int(report["delivered_ff_stale_age_max_steps_window"]))
        squared += count * float(report["delivered_ff_error_rms_window"]) ** 2
    if not steps:
        return {"steps": 0, "exact": math.nan, "stale": math.nan, "missing": math.nan,
                "stale_age_max": 0, "error_rms": math.nan}
    return {"steps": steps, "exact": exact / steps, "stale": stale / steps, "missing": missing / steps,
            "stale_age_max": oldest, "error_rms": math.sqrt(squared / steps)}


def _feedforward_use(diagnostics: dict[str, dict[str, str]]) -> str:
    """The simulator's own whole-run split of steps with an answer stamped for that step
    (exact), an older one within the timeout (stale), or none (missing)."""
    sim = diagnostics.get(SIM, {})
    if int(sim.get("delivered_ff_steps_total", 0)) == 0:
        return "none"
    return (f"{100 * float(sim['delivered_ff_exact_rate_total']):.1f} % exact, "
            f"{100 * float(sim['delivered_ff_stale_rate_total']):.1f} % stale (mean age "
            f"{sim['delivered_ff_stale_age_mean_steps_total']}, max {sim['delivered_ff_stale_age_max_steps_total']} "
            f"steps), {100 * float(sim['delivered_ff_missing_rate_total']):.1f} % missing; delivered error RMS "
            f"{float(sim['delivered_ff_error_rms_total']):.3e} N·m over {sim['delivered_ff_steps_total']} steps; "
            f"since the first answer {100 * float(sim['delivered_ff_exact_rate_since_first_answer']):.2f} % exact, "
            f"{100 * float(sim['delivered_ff_stale_rate_since_first_answer']):.2f} % stale, "
            f"{100 * float(sim['delivered_ff_missing_rate_since_first_answer']):.2f} % missing; "
            f"real-time factor achieved {sim.get('real_time_factor_achieved', 'n/a')}")


def summary_table(result: ExperimentResult) -> str:
    rows = [("PD only", "pd_only"), ("learned FF, before swap", "learned_before_swap"),
            ("right after swap", "right_after_swap"), ("learned FF, after adapting", "after_adapting")]
    lines = [f"{'phase':<28} {'tracking RMS [rad]':>20} {'FF torque RMSE [N·m]':>22} "
             f"{'delivered FF RMSE [N·m]':>24} {'exact/stale/missing [%]':>24}"]
    for label, key in rows:
        torque = result.torque_rmse.get(key, math.nan)
        delivered = result.delivered_ff.get(key, {})
        split = "/".join(f"{100 * delivered.get(kind, math.nan):.1f}" for kind in ("exact", "stale", "missing"))
        lines.append(f"{label:<28} {result.tracking_rms[key]:>20.3e} {torque:>22.3e} "
                     f"{delivered.get('error_rms', math.nan):>24.3e} {split:>24}")
    lines += [
        f"real-time factor: {result.real_time_factor_achieved:.3f} achieved of {result.real_time_factor:g} "
        f"asked (sim s per wall s, feed-forward on to the end)",
        "CPU per sim second (same span): " + (", ".join(
            f"{name} {value:.3f}" for name, value in result.cpu_per_sim_second.items()) or "n/a"),
        "FF torque RMSE: the model's answers vs the true inverse dynamics; delivered FF RMSE: what the "
        "simulator applied (stale or missing answers included) vs the truth",
        f"adaptation time after swap: {result.adaptation_time:.2f} s sim "
        f"(FF torque RMSE back within 1.5x its pre-swap level)",
        "FF torque RMSE per model served after the swap (the first is the model from before it): "
        + ", ".join(f"t={t:.1f}s {value:.3g}" for t, value in result.served_after_change)
        + f"; worse than the model from before the swap: {worse_after_change(result.served_after_change)}",
        f"first model at t={result.first_model_s:.2f} s sim; learner lag: at most {result.learner_lag_max_s:.3g} s, "
        f"{result.learner_lag_max_after_first_model_s:.3g} s from the first model on (newest stamp received − newest "
        f"processed, as the learner reported it on /diagnostics)",
        f"feed-forward as applied by the simulator (whole run): {_feedforward_use(result.diagnostics)}",
        f"learned: {result.equation}",
        f"true:    {result.true_equation}",
        f"nodes died: {', '.join(result.nodes_died) or 'none'}; plot: {result.plot}",
    ]
    return "\n".join(lines)
