"""The grey-box model of a URDF robot (issue 21): base parameters reproduce the rigid body
exactly, a fit on exact Panda data recovers its torques to rounding on held-out and wide-range
states, and its snapshot round-trips and refuses tampering with a reason."""

import base64
import json

import numpy as np
import pytest
import torch

from syrenets_ros.dynamics.urdf import RigidBodyRobot, panda_urdf, with_payload
from syrenets_ros.dynamics.urdf_motion import tracking_record
from syrenets_ros.learning import integral
from syrenets_ros.learning.payload import SnapshotError
from syrenets_ros.learning.rigid_body import (BaseParameters, RigidBodyLibrary, RigidBodyModel, fit_rigid_body)
from syrenets_ros.online.serving import implausibility, probe_states
from syrenets_ros.online.snapshot import SERVABLE_KINDS, decode_model, encode_model
from syrenets_ros.tools.bench.urdf import ELEMENTS, relative_error, wide_states


@pytest.fixture(scope="module")
def panda() -> RigidBodyRobot:
    return RigidBodyRobot.from_urdf(panda_urdf())


@pytest.fixture(scope="module")
def loaded(panda) -> RigidBodyRobot:
    """The Panda with 1 kg at the flange: data from other inertias than the URDF's."""
    return RigidBodyRobot.from_urdf(with_payload(panda.urdf, "panda_link8", 1.0, (0.0, 0.0, 0.05)))


@pytest.fixture(scope="module")
def library(panda) -> RigidBodyLibrary:
    return RigidBodyLibrary(panda)


def test_base_parameters_reproduce_the_rigid_body_exactly(panda, library):
    base = library.base
    assert 0 < len(base) < 70 and len(library) == len(base) + 28  # viscous, Coulomb, stiffness, offset
    q, qd, qdd = wide_states(panda, 50)
    rows = panda.regressor(q, qd, qdd)
    tau = panda.inverse_dynamics(q, qd, qdd)
    beta = base.of(panda.inertial_parameters())
    np.testing.assert_allclose(rows[..., list(base.columns)] @ beta, tau, atol=1e-10 * np.abs(tau).max())
    # Any inertial parameters, not only the URDF's: the dependent columns are folded exactly.
    pi = np.random.default_rng(1).normal(size=70)
    np.testing.assert_allclose(rows[..., list(base.columns)] @ base.of(pi), rows @ pi, atol=1e-9 * np.abs(rows @ pi).max())
    # The base is minimal: its columns are independent on random states.
    stacked = rows[..., list(base.columns)].reshape(-1, len(base))
    assert np.linalg.matrix_rank(stacked / np.linalg.norm(stacked, axis=0)) == len(base)
    assert BaseParameters.identify(panda).columns == base.columns  # deterministic


def test_mass_matrix_of_the_urdf_model_is_pinocchios(panda, library):
    model = RigidBodyModel.from_urdf(panda, library)
    q = torch.from_numpy(wide_states(panda, 10)[0])
    np.testing.assert_allclose(model.mass_matrix(q).numpy(), panda.mass_matrix(q.numpy()), atol=1e-12)


@pytest.fixture(scope="module")
def learned(library, loaded):
    """30 s of exact 1 kHz data of the loaded Panda with springs and friction; fitted on the
    first 24 s."""
    record = tracking_record(loaded, 30.0, seed=3, elements=ELEMENTS)
    fit = slice(0, 24_000)
    model = fit_rigid_body(library, record.stamp[fit], record.q[fit], record.qd[fit], record.qdd[fit],
                           record.tau[fit])
    return model, record


def test_exact_data_give_the_exact_robot_held_out_and_wide_range(learned, loaded, library):
    model, record = learned
    held = slice(24_000, None)
    predicted = model.torque(record.q[held], record.qd[held], record.qdd[held])
    assert float((predicted - record.tau[held]).norm() / record.tau[held].norm()) <= 1e-6
    states = wide_states(loaded)
    assert relative_error(model, loaded, states) <= 1e-6
    np.testing.assert_allclose(model.base_parameters.numpy(), library.base.of(loaded.inertial_parameters()),
                               rtol=1e-6, atol=1e-9)
    k, r = np.array(ELEMENTS.stiffness), np.array(ELEMENTS.rest_angle)
    passive = np.concatenate((ELEMENTS.damping, ELEMENTS.friction, k, -k * r))
    np.testing.assert_allclose(model.coefficients[len(library.base):].numpy(), passive, rtol=1e-6, atol=1e-9)
    # The URDF's own inertias are 1 kg short at the flange and know no friction: far from the data.
    assert relative_error(RigidBodyModel.from_urdf(library.robot, library), loaded, states) > 1e-2


def test_the_learned_model_is_plausible_and_a_flipped_one_is_not(learned):
    model, _ = learned
    assert implausibility(model, probe_states(7), 500.0) is None
    flipped = RigidBodyModel(model.library, -model.coefficients)
    assert "not positive definite" in implausibility(flipped, probe_states(7), 500.0)


def test_weak_rows_are_refused_with_a_reason(learned, library):
    _, record = learned
    with pytest.raises(ValueError, match="need rows with q̈"):
        fit_rigid_body(library, record.stamp[:3000], record.q[:3000], record.qd[:3000], record.qdd[:3000],
                       record.tau[:3000], rows=integral.RowForm("weak", 64, 16))


def _envelope(model: RigidBodyModel, names=None) -> str:
    return encode_model(model, model_version=1, joint_names=names or model.joint_names, metrics={})


def test_snapshot_round_trip_reproduces_torques_bit_for_bit(learned):
    model, record = learned
    decoded = decode_model(_envelope(model), kinds=SERVABLE_KINDS)
    assert decoded.model.kind == "rigid_body" and decoded.joint_names == list(model.joint_names)
    assert torch.equal(decoded.model.torque(record.q[:50], record.qd[:50], record.qdd[:50]),
                       model.torque(record.q[:50], record.qd[:50], record.qdd[:50]))
    assert torch.equal(decoded.model.stderr, model.stderr)


def _edited(model: RigidBodyModel, edit) -> str:
    envelope = json.loads(_envelope(model))
    edit(envelope["model"])
    return json.dumps(envelope)


def _set(key, value):
    return lambda payload: payload.__setitem__(key, value)


def _tensor(values, shape=None):
    array = np.asarray(values, dtype="<f8")
    return {"dtype": "float64", "shape": list(shape or array.shape), "data": base64.b64encode(array.tobytes()).decode()}


@pytest.mark.parametrize("edit, reason", [
    (_set("sha256", "0" * 64), "SHA-256"),
    (lambda p: p.__setitem__("urdf", p["urdf"].replace('mass value="', 'mass value="1')), "SHA-256"),
    (_set("urdf", "<robot name='x'><link name='a'/></robot>"), "no movable joint"),
    (_set("urdf", "<robot"), "not a URDF"),
    (_set("urdf", 5), "urdf must be a string"),
    (_set("base_columns", [0, 0]), "base_columns"),
    (_set("base_columns", [70]), "base_columns"),
    (_set("base_columns", [1.5]), "base_columns"),
    (_set("base_combination", _tensor(np.zeros((2, 70)))), "base_combination must have shape"),
    (_set("coefficients", _tensor([1.0, 2.0])), "coefficients"),
    (_set("forces", [{"joint": 9, "law": "viscous"}]), "forces\\[0\\]"),
    (_set("forces", [{"joint": 0, "law": "magic"}]), "forces\\[0\\]"),
    (_set("springs", [7]), "springs must be"),
    (_set("springs", [1, 0]), "springs must be"),
    (_set("springs", [0]), "coefficients"),  # fewer columns than the coefficients
    (_set("extra", 1), "expected keys"),
    (lambda p: p.pop("sha256"), "expected keys"),
])
def test_tampered_payloads_are_refused_with_a_reason(learned, edit, reason):
    model, _ = learned
    with pytest.raises(SnapshotError, match=reason):
        decode_model(_edited(model, edit), kinds=SERVABLE_KINDS)


def test_non_identity_base_definition_and_non_finite_numbers_are_refused(learned):
    model, _ = learned
    combination = model.library.base.combination.copy()
    combination[0, model.library.base.columns[0]] = 2.0
    with pytest.raises(SnapshotError, match="identity on base_columns"):
        decode_model(_edited(model, _set("base_combination", _tensor(combination))))
    text = _edited(model, _set("coefficients", _tensor(model.coefficients.numpy())))
    decode_model(text)  # the same numbers re-encoded pass
    bad = model.coefficients.numpy().copy()
    bad[3] = np.nan
    with pytest.raises(SnapshotError, match="non-finite"):
        decode_model(_edited(model, _set("coefficients", _tensor(bad))))


def test_envelope_joints_must_be_the_robots(learned):
    model, _ = learned
    names = list(model.joint_names)
    with pytest.raises(SnapshotError, match="not the model's robot's"):
        decode_model(_envelope(model, names[::-1]))
    with pytest.raises(SnapshotError, match="served"):
        decode_model(_envelope(model), joint_names=["joint1", "joint2"])
