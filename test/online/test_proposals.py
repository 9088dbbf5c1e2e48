"""The network's candidates: what the served model and the network trained on its residual predict together."""

import torch

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning import integral
from syrenets_ros.learning.syrenet import SyReNet, SyReNetConfig
from syrenets_ros.learning.terms import Force, Term, TermLibrary, TermModel
from syrenets_ros.online.guard import integral_rmse
from syrenets_ros.online.proposals import WithResidual
from syrenets_ros.online.stream import Batch
from syrenets_ros.plant.excitation import MultiSine


def test_served_model_with_residual_network_predicts_their_sum_in_every_row_form():
    """Torques add; the weak form, which differentiates the summed Lagrangian and adds the
    served model's friction, scores the sum as the acceleration form does."""
    excitation = MultiSine.from_seed(0, 1.0, 0.1)
    stamp = torch.arange(0, 1.0, 0.001, dtype=torch.float64)
    q, qd, qdd = (torch.tensor(x, dtype=torch.float64) for x in zip(*[excitation.sample(float(t)) for t in stamp]))
    served = TermModel(TermLibrary([Term((2, 0), "one", (0, 0)), Term((0, 0), "cos", (1, 0))], [Force(1, "viscous")]),
                       torch.tensor([1.5, 20.0, 0.7]))
    torch.manual_seed(0)
    network = SyReNet(SyReNetConfig()).freeze(q[::8], qd[::8])
    both = WithResidual(served, network)
    assert torch.allclose(both.torque(q, qd, qdd), served.torque(q, qd, qdd) + network.torque(q, qd, qdd))

    tau = pendulum.inverse_dynamics(q, qd, qdd, pendulum.PendulumParams())
    record = Batch(stamp, q, qd, qdd, tau)
    scores = {form: integral_rmse(both, record, integral.RowForm(form, 100, 25)) for form in ("acceleration", "weak")}
    assert abs(scores["weak"] - scores["acceleration"]) < 1e-3 * scores["acceleration"]
    assert abs(scores["acceleration"] - integral_rmse(served, record, integral.RowForm(window=100, stride=25))) > 1e-3, \
        "the network counts"
