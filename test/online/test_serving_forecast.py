"""ModelServer.forecast: passive motion of the served model through the variational
integrator's rollout loop; its progress hook abandons a forecast once cancel is set."""

from __future__ import annotations

import threading

import torch

from syrenets_ros.dynamics import pendulum
from syrenets_ros.dynamics.integrator import variational_rollout
from syrenets_ros.learning import terms
from syrenets_ros.online import snapshot
from syrenets_ros.online.serving import ModelServer

PARAMS = pendulum.PendulumParams()
Q0, QD0 = [1.0, -0.5], [0.0, 0.0]


def _serving_true_terms() -> ModelServer:
    server = ModelServer(pendulum.JOINT_NAMES, require_measurements=False)
    model = terms.true_pendulum_terms(PARAMS)
    payload = snapshot.encode_model(model, model_version=1, joint_names=pendulum.JOINT_NAMES, metrics={})
    accepted, reason = server.offer(payload)
    assert accepted, reason
    return server


def test_forecast_follows_the_true_motion_of_the_served_model():
    server = ModelServer(pendulum.JOINT_NAMES)
    assert server.forecast(Q0, QD0, horizon=0.3, step=0.01) is None  # nothing served yet
    server = _serving_true_terms()
    forecast = server.forecast(Q0, QD0, horizon=0.3, step=0.01)
    assert forecast is not None and forecast.reason == ""
    assert len(forecast.times) == len(forecast.q) == len(forecast.qd) == 31
    truth = variational_rollout(lambda q, qd: pendulum.lagrangian(q, qd, PARAMS), torch.tensor(Q0), torch.tensor(QD0), 0.01, 30)
    assert torch.allclose(torch.tensor(forecast.q, dtype=torch.float64), truth.q[0], rtol=0, atol=1e-8)
    assert torch.allclose(torch.tensor(forecast.qd, dtype=torch.float64), truth.qd[0], rtol=0, atol=1e-8)
    assert float((truth.q[0, -1] - torch.tensor(Q0)).abs().max()) > 0.1  # it really moved


def test_cancelled_forecast_is_abandoned():
    server = _serving_true_terms()
    cancel = threading.Event()
    cancel.set()
    assert server.forecast(Q0, QD0, horizon=0.3, step=0.01, cancel=cancel) is None
    assert server.forecast(Q0, QD0, horizon=0.3, step=0.01, cancel=threading.Event()) is not None
