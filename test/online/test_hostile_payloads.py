"""Hostile model payloads and checkpoint files, without ROS: parser exhaustion, amplification
(a small payload declaring a large model), replay, and checkpoint retention. Each is refused
with a reason, in bounded time and memory; a bad checkpoint is skipped, never fatal."""

import json
import os
import resource
import time

import pytest
from hostile_payloads import TRUE, amplification_payload, nested_payload

from syrenets_ros.learning.syrenet import SyReNet, SyReNetConfig
from syrenets_ros.online.snapshot import (MAX_JSON_DEPTH, SERVABLE_KINDS, RunId, SnapshotError, decode_model,
                                          encode_model, load_newest_checkpoint, save_checkpoint)

JOINTS = ["joint1", "joint2"]


def _true_envelope(version: int = 1, run_id: RunId | None = None) -> str:
    return encode_model(TRUE, model_version=version, joint_names=JOINTS, metrics={}, run_id=run_id)


@pytest.mark.parametrize("text, reason", [
    (nested_payload(), "nested 10001 levels deep"),
    ("[" * 100_000, "arrays/objects, more than the limit"),
    ('{"a":' * 2_000 + "1" + "}" * 2_000, "nested 2000 levels deep"),
])
def test_deeply_nested_json_is_refused_before_parsing(text, reason):
    with pytest.raises(SnapshotError, match=reason):
        decode_model(text)


def test_brackets_inside_strings_do_not_count_as_nesting():
    envelope = json.loads(_true_envelope())
    envelope["metrics"] = {"[" * (MAX_JSON_DEPTH * 4) + '\\"{': 1.0}
    assert decode_model(json.dumps(envelope)).metrics  # parsed: only real nesting counts


def test_amplification_payload_allocates_nothing_and_is_refused_with_a_reason():
    text = amplification_payload()
    assert len(text) < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(SnapshotError, match="not accepted here"):
        decode_model(text, kinds=SERVABLE_KINDS)  # a server never reads a trainable state
    with pytest.raises(SnapshotError, match="parameter names do not match"):
        decode_model(text)  # a checkpoint reader checks names on the meta device first
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, f"peak memory grew by {grown_mib:.0f} MiB (the network would need ~20 GiB)"


def test_declared_shape_is_checked_before_any_tensor_is_decoded():
    network = SyReNet(SyReNetConfig(layers=1, heads=2, ae_hidden=8, latent=4, head_hidden=8))
    payload = network.state_payload()
    name = next(iter(payload["parameters"]))
    payload["parameters"][name]["shape"] = [10**9]
    with pytest.raises(SnapshotError, match=f"{name}: shape"):
        SyReNet.from_state_payload(payload)


def test_run_identity_orders_runs_by_start_and_round_trips():
    first = RunId.new()
    time.sleep(0.001)
    second = RunId.new()
    assert first < second and RunId.parse(str(second)) == second
    decoded = decode_model(_true_envelope(7, second))
    assert decoded.run_id == second and decoded.model_version == 7
    for forged in ("1-2", "x" * 50, 12, "-1-0000abcd"):
        with pytest.raises(SnapshotError, match="run_id"):
            RunId.parse(forged)


def test_a_nested_checkpoint_is_skipped_and_reported_not_fatal(tmp_path):
    good = save_checkpoint(tmp_path, "model-00000001", _true_envelope(1))
    os.utime(good, ns=(1_000_000_000, 1_000_000_000))
    save_checkpoint(tmp_path, "model-00000002", nested_payload())
    decoded, skipped = load_newest_checkpoint(tmp_path)
    assert decoded.model_version == 1
    assert len(skipped) == 1 and "levels deep" in skipped[0][1]


def test_checkpoints_keep_only_the_newest(tmp_path):
    for version in range(1, 8):
        path = save_checkpoint(tmp_path, f"model-{version:08d}", _true_envelope(version), keep=3)
        os.utime(path, ns=(version * 10**9, version * 10**9))  # distinct, ordered modification times
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"model-{v:08d}.json" for v in (5, 6, 7)]
    assert load_newest_checkpoint(tmp_path)[0].model_version == 7
