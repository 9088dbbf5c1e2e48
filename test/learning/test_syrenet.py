"""SyReNet: candidate set, per-sample Euler–Lagrange semantics, frozen model, equation."""

import pytest
import sympy
import torch

from syrenets_ros.dynamics import euler_lagrange as el
from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning import integral
from syrenets_ros.online.snapshot import SnapshotError
from syrenets_ros.dynamics.euler_lagrange import batched_torque
from syrenets_ros.learning.regression import expression_terms, propose_terms
from syrenets_ros.learning.syrenet import OPERATORS, FrozenSyReNet, SyReNet, SyReNetConfig, symbolic_torque
from syrenets_ros.learning.terms import Term, TermLibrary

SMALL = SyReNetConfig(layers=2, heads=4, ae_hidden=32, latent=8, head_hidden=16)


def _states(batch: int, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [((torch.rand(batch, 2, generator=gen, dtype=torch.float64) * 2 - 1) * torch.pi / 2).to(dtype)
            for _ in range(3)]


def _model(config: SyReNetConfig = SMALL, seed: int = 0) -> SyReNet:
    torch.manual_seed(seed)
    return SyReNet(config)


def test_paper_configuration_has_304_candidates():
    config = SyReNetConfig()
    assert (config.n_joints, config.layers, config.heads) == (2, 3, 12)
    assert config.candidates == 304
    q, qd, _ = _states(5)
    assert SyReNet(config).candidates(torch.cat((q, qd, torch.zeros(5, 12, dtype=q.dtype)), -1)).shape == (5, 304)


def test_operator_set_is_configurable_and_allow_listed():
    config = SyReNetConfig(heads=2, operators=("add", "mul", "sin", "cos", "id", "square"))
    assert config.candidates == 2 * 21 + 4 * 6
    with pytest.raises(ValueError, match="unknown operator 'exp'"):
        SyReNetConfig(operators=("add", "exp")).validate()
    assert set(OPERATORS) >= {"add", "mul", "sin", "cos"}


def test_symbolic_candidates_match_numeric_candidates():
    model = _model(SyReNetConfig(layers=1, heads=1, operators=("add", "sub", "mul", "sin", "cos", "square")))
    z_symbols = sympy.symbols("a b c d e")
    numeric = model.candidates(torch.tensor([[0.3, -0.7, 1.1, 0.2, -0.4]], dtype=torch.float64))[0]
    values = dict(zip(z_symbols, (0.3, -0.7, 1.1, 0.2, -0.4)))
    symbolic = [float(expr.subs(values)) for expr in model.candidates.symbolic(z_symbols)]
    assert torch.allclose(numeric, torch.tensor(symbolic, dtype=torch.float64), atol=1e-14)


@pytest.mark.parametrize("operators", [("add", "mul", "sin", "cos"), ("add", "sub", "mul", "sin", "cos", "id", "square")])
def test_three_torque_paths_agree(operators):
    model = _model(SyReNetConfig(layers=3, heads=3, operators=operators, ae_hidden=16, latent=4, head_hidden=8))
    q, qd, qdd = _states(40, seed=1)
    weights = [w.detach() for w in model.selection(q, qd).weights]
    reference = el.torque(model.lagrangian_fn(weights), q, qd, qdd)
    assert reference.abs().max() > 1e-3
    assert torch.allclose(batched_torque(model.lagrangian_fn(weights), q, qd, qdd), reference, rtol=0, atol=1e-12)
    assert torch.allclose(symbolic_torque(q, qd, qdd, weights, model.candidates), reference, rtol=0, atol=1e-12)


def test_derivatives_do_not_mix_samples_when_weights_are_fixed():
    model = _model()
    q, qd, qdd = _states(16, seed=2)
    weights = [w.detach() for w in model.selection(q, qd).weights]
    before = model.torque(q, qd, qdd, weights)
    q2, qd2, qdd2 = q.clone(), qd.clone(), qdd.clone()
    q2[5] += 0.3
    qd2[5] -= 0.2
    qdd2[5] += 1.0
    after = model.torque(q2, qd2, qdd2, weights)
    keep = torch.arange(16) != 5
    assert torch.equal(before[keep], after[keep])
    assert not torch.allclose(before[5], after[5])
    for i in (0, 9):
        alone = model.torque(q[i:i + 1], qd[i:i + 1], qdd[i:i + 1], weights)
        assert torch.allclose(alone[0], before[i], rtol=0, atol=1e-12)


def test_selection_depends_on_the_batch_but_gradients_reach_the_selector():
    model = _model()
    q, qd, qdd = _states(32, seed=3)
    tau = pendulum.inverse_dynamics(q, qd, qdd, pendulum.PendulumParams())
    w_full = model.selection(q, qd).weights[0]
    w_half = model.selection(q[:16], qd[:16]).weights[0]
    assert not torch.allclose(w_full, w_half)
    total, parts = model.loss(q, qd, qdd, tau)
    total.backward()
    assert set(parts) >= {"total", "torque_mse", "reconstruction", "jacobian", "entropy", "cross_entropy"}
    for parameter in (model.layers[0].logits, model.layers[-1].scale, model.autoencoder.encoder[0].weight):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_integral_loss_is_the_window_weighted_residual_with_a_subsampled_selection():
    """The integral loss's torque term is the mean square of the integral rows of the network's
    own residual, with the selection weights taken from every k-th sample; gradients reach the
    selector; a batch that is not whole windows is refused."""
    model = _model()
    q, qd, qdd = _states(4 * 25, seed=5)
    tau = pendulum.inverse_dynamics(q, qd, qdd, pendulum.PendulumParams())
    total, parts = model.integral_loss(q, qd, qdd, tau, window=25, selection_size=20)
    total.backward()
    weights = model.selection(q[::5], qd[::5]).weights
    expected = integral.torque_rows(model.lagrangian_fn(weights), q, qd, qdd, tau, 25).square().mean()
    assert parts["integral_mse"] == pytest.approx(expected.item(), rel=1e-12)
    by_hand = ((model.torque(q, qd, qdd, weights) - tau).reshape(4, 25, 2)
               * integral.window_weights(25)[None, :, None]).sum(1).square().mean()
    assert parts["integral_mse"] == pytest.approx(by_hand.item(), rel=1e-9)
    assert model.layers[0].logits.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        model.integral_loss(q[:90], qd[:90], qdd[:90], tau[:90], window=25)


def test_frozen_sample_alone_equals_sample_in_any_batch():
    model = _model()
    q, qd, qdd = _states(200, seed=4)
    frozen = model.freeze(q[:64], qd[:64])
    large = frozen.torque(q, qd, qdd)           # autograd path (batch > 64)
    small = frozen.torque(q[:20], qd[:20], qdd[:20])  # jet path
    assert torch.allclose(small, large[:20], rtol=0, atol=1e-12)
    for i in (0, 77, 199):
        alone = frozen.torque(q[i:i + 1], qd[i:i + 1], qdd[i:i + 1])
        assert torch.allclose(alone[0], large[i], rtol=0, atol=1e-12)
    assert torch.allclose(frozen.lagrangian(q, qd)[3], frozen.lagrangian(q[3:4], qd[3:4])[0], rtol=0, atol=1e-14)
    assert torch.allclose(el.torque(frozen.lagrangian_fn(), q, qd, qdd), large, rtol=0, atol=1e-12)


def test_frozen_model_is_the_selection_of_its_reference_batch():
    model = _model()
    q, qd, qdd = _states(48, seed=5)
    weights = model.selection(q, qd).weights
    frozen = model.freeze(q, qd)
    assert torch.allclose(frozen.torque(q, qd, qdd), model.torque(q, qd, qdd, weights).detach(), rtol=0, atol=1e-12)


def _hand_made(weights_entries: dict[tuple[int, int, int], float], config: SyReNetConfig) -> FrozenSyReNet:
    weights = [torch.zeros(config.candidates, config.heads, dtype=torch.float64) for _ in range(config.layers)]
    for (layer, candidate, head), value in weights_entries.items():
        weights[layer][candidate, head] = value
    return FrozenSyReNet(config, weights)


def test_equation_of_a_sparse_model_is_the_exact_expression():
    config = SyReNetConfig(layers=2, heads=2)
    m = config.inputs  # z = (q1, q2, qd1, qd2, h1, h2); add pairs first, then mul, sin, cos
    pairs = torch.triu_indices(m, m).t().tolist()
    mul = {tuple(p): len(pairs) + i for i, p in enumerate(pairs)}
    cos = 2 * len(pairs) + m
    frozen = _hand_made({(0, mul[(2, 2)], 0): 3.0,          # h1_1 = 3 qd1²
                         (0, cos + 0, 1): 2.5,               # h1_2 = 2.5 cos q1
                         (1, mul[(4, 4)] - len(pairs) + len(pairs), 0): 0.0,
                         (1, pairs.index([4, 4]), 0): 0.5,   # h2_1 = 0.5 (h1_1 + h1_1)
                         (1, pairs.index([5, 5]), 1): 0.5}, config)
    text = frozen.equation()
    q1, qd1 = sympy.symbols("q1 qd1")
    assert text.startswith("L = ")
    assert sympy.simplify(sympy.sympify(text[4:]) - (3 * qd1**2 + 2.5 * sympy.cos(q1))) == 0
    q, qd, qdd = _states(10, seed=6)
    expected = 3 * qd[:, 0] ** 2 + 2.5 * torch.cos(q[:, 0])
    assert torch.allclose(frozen.lagrangian(q, qd), expected, atol=1e-12)


def test_frozen_expression_proposes_the_terms_it_is_made_of():
    """A network whose L is 0.4 cos(5.02 q2) + q̇2² q2² (a frequency the grammar lacks, a
    composition no default term has) proposes cos 5q2 and sin 5q2 (a phase mixes them) and
    q̇2² q2² from its expression; projected on its own torques, only those it uses stay."""
    config = SyReNetConfig(layers=2, heads=2)
    m = config.inputs  # z = (q1, q2, qd1, qd2, h1, h2); add pairs first, then mul, sin, cos
    pairs = torch.triu_indices(m, m).t().tolist()
    mul = {tuple(p): len(pairs) + i for i, p in enumerate(pairs)}
    cos = 2 * len(pairs) + m
    frozen = _hand_made({(0, pairs.index([1, 1]), 0): 2.51,  # h1_1 = 2.51 (q2 + q2)
                         (0, mul[(1, 3)], 1): 1.0,           # h1_2 = q2 qd2
                         (1, cos + 4, 0): 0.4,               # h2_1 = 0.4 cos h1_1
                         (1, mul[(5, 5)], 1): 1.0}, config)  # h2_2 = h1_2²
    q, qd, qdd = _states(256, seed=8)
    expected = 0.4 * torch.cos(5.02 * q[:, 1]) + qd[:, 1] ** 2 * q[:, 1] ** 2
    assert torch.allclose(frozen.lagrangian(q, qd), expected, atol=1e-12)

    cogging, shifted = Term((0, 0), "cos", (0, 5)), Term((0, 0), "sin", (0, 5))
    composed = Term((0, 2), "one", (0, 0), (0, 2))
    assert set(expression_terms(frozen.expression(), 2)) == {cogging, shifted, composed}

    grammar = TermLibrary.grammar(2, dissipation=True)
    proposed = propose_terms(frozen.lagrangian_fn(), grammar, q, qd, qdd, expression=frozen.expression())
    assert cogging in proposed and shifted not in proposed
    assert cogging not in propose_terms(frozen.lagrangian_fn(), grammar, q, qd, qdd), "the grammar alone lacks it"


def test_equation_of_a_dense_model_stays_bounded():
    frozen = _model(SyReNetConfig()).freeze(*_states(64, seed=7)[:2])
    text = frozen.equation(max_chars=3000)
    assert "q1" in text and "qd1" in text
    assert len(text) < 12 * 3 * 400  # named definitions: bounded by heads × layers × pruned terms


def test_frozen_payload_round_trip_and_validation():
    frozen = _model().freeze(*_states(32, seed=8)[:2])
    again = FrozenSyReNet.from_payload(frozen.to_payload())
    q, qd, qdd = _states(30, seed=9)
    assert torch.equal(again.torque(q, qd, qdd), frozen.torque(q, qd, qdd))
    payload = frozen.to_payload()
    payload["config"]["operators"] = ["add", "mul", "sin", "os.system"]
    with pytest.raises(SnapshotError, match="unknown operator"):
        FrozenSyReNet.from_payload(payload)
    payload = frozen.to_payload()
    payload["weights"] = payload["weights"][:1]
    with pytest.raises(SnapshotError, match="list of 2 tensors"):
        FrozenSyReNet.from_payload(payload)


def test_direct_mode_fits_the_lagrangian_value():
    model = _model()
    q, qd, _ = _states(32, seed=10)
    target = pendulum.lagrangian(q, qd, pendulum.PendulumParams())
    total, parts = model.direct_loss(q, qd, target)
    total.backward()
    assert parts["lagrangian_mse"] > 0 and model.layers[-1].scale.grad.abs().sum() > 0


def test_float32_model_runs_and_matches_float64_closely():
    model64 = _model()
    model32 = _model(SyReNetConfig(**{**SMALL.to_json(), "operators": SMALL.operators, "dtype": "float32"}))
    assert next(model32.parameters()).dtype == torch.float32
    q, qd, qdd = _states(16, seed=11)
    tau32 = model32.freeze(q.float(), qd.float()).torque(q.float(), qd.float(), qdd.float())
    tau64 = model64.freeze(q, qd).torque(q, qd, qdd)
    assert tau32.dtype == torch.float32
    assert torch.allclose(tau32.double(), tau64, rtol=1e-3, atol=1e-4)
    served = model32.freeze(q.float(), qd.float()).torque(q, qd, qdd)  # float64 states from the robot
    assert torch.equal(served, tau32)


def test_contractive_penalty_matches_the_autograd_jacobian():
    torch.manual_seed(3)
    exact = SyReNet(SyReNetConfig(**{**SMALL.to_json(), "operators": SMALL.operators, "jacobian_probes": 0}))
    autoencoder = exact.autoencoder
    u = torch.randn(24, SMALL.candidates, dtype=torch.float64)

    def encode(row):
        first, second, third = autoencoder.encoder
        return third(torch.nn.functional.softplus(second(torch.nn.functional.softplus(first(row)))))

    jac = torch.func.vmap(torch.func.jacrev(encode))(u)
    expected = jac.square().sum() / (24 * SMALL.latent * SMALL.candidates)
    assert torch.allclose(autoencoder(u)[2], expected, rtol=1e-12)
    autoencoder.probes = 64  # Hutchinson: unbiased, close with many probes
    estimate = torch.stack([autoencoder(u)[2] for _ in range(4)]).mean()
    assert torch.allclose(estimate, expected, rtol=0.05)
