"""The simulator's ranges follow the physics in force (issue 23): damping and stiffness the
explicit step cannot integrate for the links' inertia are refused with the bound and the
inertia, re-checked when the links change; and the bound is the real engine's."""

from __future__ import annotations

import numpy as np
import pytest

from syrenets_ros.dynamics.pendulum import JointElements, PendulumParams
from syrenets_ros.plant.settings import STEP_BOUND, SimSettings, settings_with, step_load
from syrenets_ros.plant.simulator import Simulator


def _refusal(settings: SimSettings, changes: dict, running: bool = True) -> str:
    with pytest.raises(ValueError) as caught:
        settings_with(settings, changes, running=running)
    return str(caught.value)


def test_damping_in_range_but_beyond_the_step_is_refused_with_the_bound_and_the_inertia():
    paper = SimSettings()
    assert step_load(paper)[0] < STEP_BOUND  # the defaults run
    message = _refusal(paper, {"joint_damping": [0.0, 1000.0]})  # issue 23: |q̇| reached 624 rad/s
    assert "cannot integrate damping b + kd = (150, 1020)" in message
    assert "stability bound 4" in message and "effective joint inertia is 0.411 kg·m²" in message
    assert "cannot integrate" in _refusal(paper, {"kd": [1.0e4, 20.0]})
    damped = settings_with(paper, {"joint_damping": [0.0, 300.0]})
    assert damped.joint_damping == (0.0, 300.0)
    # A lighter link under the damping already set is refused too, and so is one under kd alone.
    assert "cannot integrate" in _refusal(damped, {"link2_mass": 0.3})
    assert "effective joint inertia" in _refusal(paper, {"link2_mass": 0.01})
    # Stiffness: harmless at 1 ms, beyond the step at 10 ms.
    settings_with(paper, {"joint_stiffness": [1.0e4, 1.0e4]})
    coarse = settings_with(paper, {"time_step": 1.0e-2, "kd": [1.0, 1.0]}, running=False)
    assert "stiffness k + kp + a·p² = (10300, 10100)" in _refusal(coarse, {"joint_stiffness": [1.0e4, 1.0e4]})
    # Cogging's stiffest slope a·p² counts as stiffness: 100 J at 8 detents is 6400 N·m/rad more.
    springy = settings_with(coarse, {"joint_stiffness": [5.0e3, 5.0e3]})
    assert "(11700, 11500)" in _refusal(springy, {"joint_cogging": [100.0, 100.0], "cogging_periods": 8})


def _peak_speed(damping: float) -> float:
    with Simulator(PendulumParams(), qd0=(0.0, 1.0), joints=JointElements(damping=(0.0, damping))) as sim:
        peak = 0.0
        for _ in range(3000):
            sim.step((0.0, 0.0))
            peak = max(peak, float(np.abs(sim.state()[1]).max()))
    return peak


def test_the_bound_is_where_the_real_engine_goes_unstable():
    """PyBullet with damping on joint 2 alone: below the unhalved bound 4 the motion decays,
    above it the joint runs away, as the settings' figure says."""
    free = SimSettings(kp=(0.0, 0.0), kd=(0.0, 0.0))
    per_unit = step_load(SimSettings(kp=(0.0, 0.0), kd=(0.0, 0.0), joint_damping=(0.0, 1.0)))[0]
    assert step_load(free)[0] == 0.0
    assert _peak_speed(3.6 / per_unit) <= 1.0 + 1e-9
    assert _peak_speed(4.4 / per_unit) > 100.0
