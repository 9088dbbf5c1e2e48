"""``bench sim --robot panda`` runs the 7-joint Panda through the core and the node at toy size and
reports CPU per step beside steps/s."""

import argparse
import json

from syrenets_ros.tools.bench import sim as bench_sim


def test_sim_benchmark_on_the_panda_at_toy_size(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench_sim.add_arguments(parser)
    out = tmp_path / "sim.json"
    args = parser.parse_args(["--robot", "panda", "--core-steps", "300", "--seconds", "0.5",
                              "--paced-seconds", "0.5", "--json", str(out)])
    assert bench_sim.run(args) == 0
    result = json.loads(out.read_text())
    assert result["robot"] == "panda"
    for part in ("core", "node_unpaced", "node_paced_1khz"):
        assert result[part]["steps"] > 0 and result[part]["cpu_ms_per_step"] > 0.0, part
    assert result["node_paced_1khz"]["real_time_factor_achieved"] > 0.0
    assert "node CPU per step, paced 1 kHz [ms]" in capsys.readouterr().out
