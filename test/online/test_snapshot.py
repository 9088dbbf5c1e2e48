"""Model envelope and checkpoint files: round trips are exact, tampering is refused."""

import base64
import json
import os

import pytest
import torch

from syrenets_ros.learning import payload
from syrenets_ros.online.snapshot import SnapshotError, decode_model, encode_model, load_newest_checkpoint, save_checkpoint
from syrenets_ros.learning.syrenet import FrozenSyReNet, SyReNet, SyReNetConfig

SMALL = SyReNetConfig(layers=2, heads=4, ae_hidden=32, latent=8, head_hidden=16)
JOINTS = ("joint1", "joint2")


def _states(batch: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 2, generator=gen, dtype=torch.float64) * 2 - 1) * 1.5 for _ in range(3)]


@pytest.fixture(scope="module")
def frozen() -> FrozenSyReNet:
    torch.manual_seed(0)
    q, qd, _ = _states(32, seed=0)
    return SyReNet(SMALL).freeze(q, qd)


def _envelope(frozen: FrozenSyReNet, version: int = 3) -> str:
    return encode_model(frozen, model_version=version, joint_names=JOINTS, metrics={"val_mse": 0.5, "steps": 100})


def test_round_trip_reproduces_torques_bit_for_bit(frozen):
    decoded = decode_model(_envelope(frozen))
    assert decoded.model_version == 3 and decoded.joint_names == list(JOINTS)
    assert decoded.metrics == {"val_mse": 0.5, "steps": 100.0}
    assert isinstance(decoded.model, FrozenSyReNet)
    for batch in (1, 500):
        q, qd, qdd = _states(batch, seed=1)
        assert torch.equal(decoded.model.torque(q, qd, qdd), frozen.torque(q, qd, qdd))
    assert decoded.model.equation() == frozen.equation()


def _tamper(text: str, edit) -> str:
    envelope = json.loads(text)
    edit(envelope)
    return json.dumps(envelope)


def _set_weight(envelope: dict, **changes) -> None:
    envelope["model"]["weights"][0].update(changes)


@pytest.mark.parametrize("edit, reason", [
    (lambda e: _set_weight(e, data="!!not base64!!"), "not valid base64"),
    (lambda e: _set_weight(e, shape=[3, 3]), "do not match shape"),
    (lambda e: e["model"]["config"].update(operators=["add", "mul", "sin", "__import__"]), "unknown operator"),
    (lambda e: e.update(kind="pickle"), "unknown model kind"),
    (lambda e: e.update(schema_version=1), "schema_version 1 not supported"),
    (lambda e: e.update(format="something.else"), "format"),
    (lambda e: e.update(extra=1), "exactly the keys"),
    (lambda e: e.update(model_version=-1), "model_version"),
    (lambda e: e.update(joint_names="joint1"), "joint_names"),
    (lambda e: e["metrics"].update(loss="low"), "expected a number"),
    (lambda e: e["model"]["config"].update(heads=10_000), "heads must be an integer"),
    (lambda e: e["model"]["config"].pop("latent"), "config: expected exactly the keys"),
])
def test_tampered_payloads_are_refused_with_a_reason(frozen, edit, reason):
    with pytest.raises(SnapshotError, match=reason):
        decode_model(_tamper(_envelope(frozen), edit))


def test_wrong_tensor_shape_with_consistent_bytes_is_refused(frozen):
    def edit(envelope):
        envelope["model"]["weights"][0] = payload.tensor_to_json(torch.zeros(5, 4, dtype=torch.float64))
    with pytest.raises(SnapshotError, match=r"weights\[0\]: shape \[5, 4\] != expected"):
        decode_model(_tamper(_envelope(frozen), edit))


def test_nan_values_are_refused(frozen):
    def edit(envelope):
        weights = payload.tensor_from_json(envelope["model"]["weights"][1]).clone()
        weights[0, 0] = float("nan")
        raw = weights.numpy().astype("<f8").tobytes()
        envelope["model"]["weights"][1]["data"] = base64.b64encode(raw).decode()
    with pytest.raises(SnapshotError, match="non-finite"):
        decode_model(_tamper(_envelope(frozen), edit))
    with pytest.raises(SnapshotError, match="non-finite number NaN"):
        decode_model(_envelope(frozen).replace('"val_mse":0.5', '"val_mse":NaN'))


def test_truncated_oversize_and_non_json_input_are_refused(frozen):
    text = _envelope(frozen)
    with pytest.raises(SnapshotError, match="not valid JSON"):
        decode_model(text[: len(text) // 2])
    with pytest.raises(SnapshotError, match="exceeds the limit"):
        decode_model(text, max_bytes=len(text) - 1)
    with pytest.raises(SnapshotError, match="not valid JSON"):
        decode_model(b"\xff\xfe garbage")
    with pytest.raises(SnapshotError, match="envelope must have"):
        decode_model("[1, 2, 3]")


def test_encode_refuses_non_finite_metrics_and_unknown_kinds(frozen):
    with pytest.raises(SnapshotError, match="not finite"):
        encode_model(frozen, model_version=1, joint_names=JOINTS, metrics={"loss": float("inf")})

    class Impostor:
        kind = "shell"

    with pytest.raises(SnapshotError, match="unknown model kind"):
        encode_model(Impostor(), model_version=1, joint_names=JOINTS, metrics={})


def test_trainable_state_round_trips_exactly():
    torch.manual_seed(1)
    model = SyReNet(SMALL)
    q, qd, qdd = _states(32, seed=2)
    tau = torch.randn(32, 2, dtype=torch.float64)
    text = encode_model(model, model_version=0, joint_names=JOINTS, metrics={})
    restored = decode_model(text).model
    assert isinstance(restored, SyReNet)
    losses = []
    for network in (model, restored):
        torch.manual_seed(7)  # the contractive penalty's Hutchinson probes are random
        losses.append(network.loss(q, qd, qdd, tau)[1])
    assert losses[0] == losses[1]
    payload = model.state_payload()
    payload["parameters"].pop("candidate_norm.weight")
    with pytest.raises(SnapshotError, match="parameter names do not match"):
        SyReNet.from_state_payload(payload)


def test_checkpoint_resume_skips_a_corrupt_newest_file(tmp_path, frozen):
    older = save_checkpoint(tmp_path, "model_000001", _envelope(frozen, version=1))
    newest = save_checkpoint(tmp_path, "model_000002", _envelope(frozen, version=2))
    os.utime(older, ns=(1_000_000_000, 1_000_000_000))
    decoded, skipped = load_newest_checkpoint(tmp_path)
    assert decoded.model_version == 2 and skipped == []
    newest.write_text(_envelope(frozen, version=2)[:100])  # a torn write from an older tool
    decoded, skipped = load_newest_checkpoint(tmp_path)
    assert decoded.model_version == 1
    assert [path for path, _ in skipped] == [newest] and "not valid JSON" in skipped[0][1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_checkpoint_directory_without_valid_files(tmp_path):
    assert load_newest_checkpoint(tmp_path / "missing") == (None, [])
    (tmp_path / "bad.json").write_text("{}")
    decoded, skipped = load_newest_checkpoint(tmp_path)
    assert decoded is None and len(skipped) == 1
    with pytest.raises(ValueError, match="plain file name"):
        save_checkpoint(tmp_path, "../escape", "{}")
