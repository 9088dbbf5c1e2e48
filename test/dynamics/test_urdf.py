"""The URDF core agrees with itself to machine precision: the regressor times the URDF's
inertial parameters is Pinocchio's inverse dynamics, and M(q) q̈ is the acceleration part."""

import numpy as np
import pytest

from syrenets_ros.dynamics.urdf import RigidBodyRobot, UrdfError, panda_urdf, strip_geometry


@pytest.fixture(scope="module")
def panda() -> RigidBodyRobot:
    return RigidBodyRobot.from_urdf(panda_urdf())


def test_the_panda_is_a_seven_joint_arm_without_meshes(panda):
    assert panda.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert "<mesh" not in panda.urdf
    assert len(panda.digest) == 64


def test_regressor_times_inertial_parameters_is_inverse_dynamics(panda):
    rng = np.random.default_rng(3)
    q, qd, qdd = (rng.normal(size=(20, 7)) for _ in range(3))
    tau = panda.inverse_dynamics(q, qd, qdd)
    rows = panda.regressor(q, qd, qdd)
    assert rows.shape == (20, 7, 70)
    np.testing.assert_allclose(np.einsum("knp,p->kn", rows, panda.inertial_parameters()), tau, atol=1e-12)
    inertia = panda.mass_matrix(q)
    np.testing.assert_allclose(inertia, inertia.transpose(0, 2, 1))
    static = panda.inverse_dynamics(q, qd, np.zeros_like(qdd))
    np.testing.assert_allclose(np.einsum("kij,kj->ki", inertia, qdd) + static, tau, atol=1e-12)


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("<robot name='x'><link name='a'/>", "not a URDF"),
    ("<robot name='x'><link name='a'/></robot>", "no movable joint"),
])
def test_bad_descriptions_are_refused_with_the_reason(text, reason):
    with pytest.raises(UrdfError, match=reason):
        RigidBodyRobot.from_urdf(text)


def test_a_continuous_joint_is_refused_by_name():
    urdf = ("<robot name='r'><link name='a'/><link name='b'><inertial><mass value='1'/>"
            "<inertia ixx='1' ixy='0' ixz='0' iyy='1' iyz='0' izz='1'/></inertial></link>"
            "<joint name='wheel' type='continuous'><parent link='a'/><child link='b'/>"
            "<axis xyz='0 0 1'/></joint></robot>")
    with pytest.raises(UrdfError, match="'wheel'"):
        RigidBodyRobot.from_urdf(urdf)
    with pytest.raises(UrdfError, match="no movable joint"):  # a locked joint leaves nothing to move
        RigidBodyRobot.from_urdf(strip_geometry(urdf, lock=("wheel",)))


def test_the_digest_names_the_robot_not_its_formatting(panda):
    folded = panda.urdf.replace("\n", " ").replace("<robot", "<!-- reformatted --><robot", 1)
    assert RigidBodyRobot.from_urdf(folded).digest == panda.digest
    heavier = panda.urdf.replace('<mass value="0.629769"', '<mass value="0.63"', 1)
    assert heavier != panda.urdf and RigidBodyRobot.from_urdf(heavier).digest != panda.digest
