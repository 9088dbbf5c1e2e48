"""`bench online --background`: the busy processes run beside the benchmark, at the asked nice
value, and end with it whatever happens (issue 20: measure under load)."""

import os
import time

import pytest

from syrenets_ros.tools.bench.online import background_load


def test_background_load_runs_busy_processes_at_their_nice_value_and_ends_them():
    # Root sets any nice value; anyone else cannot go below what this process has (other tests
    # may have niced it: the learner node gives itself nice 10).
    expected = 17 if os.geteuid() == 0 else max(17, os.getpriority(os.PRIO_PROCESS, 0))
    with background_load(2, 17, new_session=True) as processes:
        assert len(processes) == 2 and all(p.poll() is None for p in processes)
        deadline = time.monotonic() + 30.0  # each sets its own nice value as it starts
        while time.monotonic() < deadline and any(os.getpriority(os.PRIO_PROCESS, p.pid) != expected
                                                  for p in processes):
            time.sleep(0.05)
        assert all(os.getpriority(os.PRIO_PROCESS, p.pid) == expected for p in processes)
        assert all(os.getsid(p.pid) == p.pid for p in processes), "each leads a session of its own"
    assert all(p.poll() is not None for p in processes)


def test_background_load_ends_its_processes_when_the_benchmark_fails():
    with pytest.raises(RuntimeError), background_load(1, 19, new_session=False) as processes:
        raise RuntimeError("a failed run")
    assert processes[0].poll() is not None


def test_a_combined_change_is_parsed_into_simulator_parameters_and_bad_ones_are_refused():
    from syrenets_ros.plant.settings import SimSettings, settings_with
    from syrenets_ros.tools.bench.online import parse_swap

    swap = parse_swap(["link2_mass=2.0", "joint_stiffness=0,20", "joint_damping=0.3,0.3"])
    assert swap == {"link2_mass": 2.0, "joint_stiffness": [0.0, 20.0], "joint_damping": [0.3, 0.3]}
    after = settings_with(SimSettings(), swap)  # what the experiment checks before the run
    assert after.params.m2 == 2.0
    for bad in (["link2_mass"], ["link2_mass=heavy"], ["=2"]):
        with pytest.raises(SystemExit, match="--swap"):
            parse_swap(bad)
