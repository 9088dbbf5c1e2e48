"""SyReNet (Symbolic Residual Network) for Lagrangians, SPEC §3, in one file.

The network has two halves that meet in the selection weights W_i (|v| × k per layer):

* the *selector* looks at a whole batch (layer norm over candidates, a contractive
  auto-encoder, a d × d similarity of latent dimensions, k selection heads) and produces W_i;
* the *symbolic part* is a per-sample closed form L(x; W): z = concat(x, h_{i−1}), candidates
  v(z) from the operator set, h_i = v(z) W_i, L = Σ_j h_{last, j}.

Euler–Lagrange derivatives are taken of L(x; W) with W held fixed, so a sample's torque never
depends on the other samples in its batch (the reference code differentiates a batch-summed L
through the selector). Gradients with respect to parameters still flow through W. Frozen at
its W's, the model is a closed-form expression in (q, q̇): :class:`FrozenSyReNet`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, ClassVar, NamedTuple, Sequence

import sympy
import torch
import torch.nn.functional as F
from torch import nn

from syrenets_ros.dynamics import euler_lagrange as el
from syrenets_ros.learning import integral
from syrenets_ros.learning.payload import SnapshotError, tensor_from_json, tensor_to_json

LagrangianFn = el.LagrangianFn


# A "jet" carries, for every node of L(x), the channels needed for Euler–Lagrange in one
# forward pass: value a, rate ȧ = ∇a·ẋ, gradient ∇a (2n) and gradient of the rate ∇ȧ (2n),
# stacked on axis −2 (jets are (..., C, m), so a layer's linear map is a plain matmul).
# Then τ = ∇ₓ(L̇)[q̇] − ∇ₓL[q] with ẋ = (q̇, q̈) held fixed.
def _jet_parts(jet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    width = (jet.shape[-2] - 2) // 2
    return jet[..., 0:1, :], jet[..., 1:2, :], jet[..., 2:2 + width, :], jet[..., 2 + width:, :]


def _unary_jet(f: Callable, df: Callable, ddf: Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    """Jet rule of c = f(a): ċ = f'ȧ, ∇c = f'∇a, ∇ċ = f''ȧ∇a + f'∇ȧ."""

    def rule(jet: torch.Tensor) -> torch.Tensor:
        a, rate, grad_a, grad_rate = _jet_parts(jet)
        d1, d2 = df(a), ddf(a)
        return torch.cat((f(a), d1 * rate, d1 * grad_a, d2 * rate * grad_a + d1 * grad_rate), dim=-2)

    return rule


def _mul_jet(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Jet rule of c = ab (product rule, twice)."""
    a, a_rate, a_grad, a_grad_rate = _jet_parts(left)
    b, b_rate, b_grad, b_grad_rate = _jet_parts(right)
    return torch.cat((a * b, a_rate * b + a * b_rate, b * a_grad + a * b_grad,
                      b * a_grad_rate + b_rate * a_grad + a_rate * b_grad + a * b_grad_rate), dim=-2)


class Operator(NamedTuple):
    """One candidate-building operator: unary ops act on every z_a, binary ops on every pair
    a ≤ b (upper triangle including the diagonal, so z_a + z_a and z_a² are present).
    ``jet_fn`` is the same operation on jets (see :func:`symbolic_torque`)."""

    arity: int
    torch_fn: Callable[..., torch.Tensor]
    sympy_fn: Callable[..., sympy.Expr]
    jet_fn: Callable[..., torch.Tensor]


# The allow-list of operators: adding one is one entry here (payloads may only name these).
OPERATORS: dict[str, Operator] = {
    "add": Operator(2, torch.add, lambda a, b: a + b, torch.add),
    "sub": Operator(2, torch.sub, lambda a, b: a - b, torch.sub),
    "mul": Operator(2, torch.mul, lambda a, b: a * b, _mul_jet),
    "sin": Operator(1, torch.sin, sympy.sin, _unary_jet(torch.sin, torch.cos, lambda a: -torch.sin(a))),
    "cos": Operator(1, torch.cos, sympy.cos,
                    _unary_jet(torch.cos, lambda a: -torch.sin(a), lambda a: -torch.cos(a))),
    "id": Operator(1, lambda a: a, lambda a: a, lambda jet: jet),
    "square": Operator(1, torch.square, lambda a: a**2,
                       _unary_jet(torch.square, lambda a: 2 * a, lambda a: torch.full_like(a, 2.0))),
}

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
JET_MAX_BATCH = 64  # frozen inference: jets up to this batch size, autograd above (measured)


@dataclass(frozen=True)
class SyReNetConfig:
    """Architecture and loss weights; defaults are the paper's (λ1 = λ3 = 1, λ2 = 1e-3)."""

    n_joints: int = 2
    layers: int = 3
    heads: int = 12
    operators: tuple[str, ...] = ("add", "mul", "sin", "cos")
    ae_hidden: int = 128
    latent: int = 16
    head_hidden: int = 64
    lambda_jacobian: float = 1.0
    lambda_entropy: float = 1e-3
    lambda_cross: float = 1.0
    scale_gain: float | None = None  # None: |v|, the reference's effective gain (see SelectionLayer)
    jacobian_probes: int = 2  # 0: exact ‖J‖²_F (~1.7x slower step); p: Hutchinson estimate
    dtype: str = "float64"

    def validate(self) -> None:
        """Raise ValueError naming the first unacceptable field (payloads come from the wire)."""
        for name, low, high in (("n_joints", 1, 16), ("layers", 1, 8), ("heads", 1, 64),
                                ("ae_hidden", 1, 1024), ("latent", 1, 256), ("head_hidden", 1, 1024),
                                ("jacobian_probes", 0, 256)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        if not self.operators or len(set(self.operators)) != len(self.operators):
            raise ValueError(f"operators must be a non-empty list without repeats, got {self.operators!r}")
        for name in self.operators:
            if name not in OPERATORS:
                raise ValueError(f"unknown operator {name!r}; allowed: {sorted(OPERATORS)}")
        for name in ("lambda_jacobian", "lambda_entropy", "lambda_cross"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        gain = self.scale_gain
        if gain is not None and (isinstance(gain, bool) or not isinstance(gain, (int, float))
                                 or not math.isfinite(gain) or gain <= 0):
            raise ValueError(f"scale_gain must be a finite number > 0 or null, got {gain!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")

    @property
    def inputs(self) -> int:
        """Width of z = concat(q, q̇, h_{i−1})."""
        return 2 * self.n_joints + self.heads

    @property
    def candidates(self) -> int:
        """|v|: candidates per layer (304 for n = 2, k = 12 and + × sin cos)."""
        m = self.inputs
        return sum(m * (m + 1) // 2 if OPERATORS[o].arity == 2 else m for o in self.operators)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def to_json(self) -> dict:
        return dict(asdict(self), operators=list(self.operators))

    @classmethod
    def from_json(cls, obj: object) -> "SyReNetConfig":
        """Build a validated config from a payload dict; SnapshotError on anything unexpected."""
        expected = {f for f in cls.__dataclass_fields__}
        if not isinstance(obj, dict) or set(obj) != expected:
            raise SnapshotError(f"config: expected exactly the keys {sorted(expected)}")
        if not isinstance(obj["operators"], list) or not all(isinstance(o, str) for o in obj["operators"]):
            raise SnapshotError("config: operators must be a list of names")
        config = cls(**dict(obj, operators=tuple(obj["operators"])))
        try:
            config.validate()
        except ValueError as exc:
            raise SnapshotError(f"config: {exc}") from exc
        return config


class CandidateBuilder:
    """v(z): every operator applied to z (unary) or to the pairs a ≤ b of z (binary).

    Works on any leading shape (..., m), so the same code serves a single sample under
    torch.func and a whole batch."""

    def __init__(self, config: SyReNetConfig):
        self.operators = config.operators
        m = config.inputs
        self.pairs = torch.triu_indices(m, m)
        # Pair gathering as a product with a fixed 0/1 matrix: its backward is a plain matmul
        # (an index's backward is a scatter-add, measured slower in the training step).
        self._pick = torch.zeros(2, m, self.pairs.shape[1])
        self._pick[0, self.pairs[0], torch.arange(self.pairs.shape[1])] = 1.0
        self._pick[1, self.pairs[1], torch.arange(self.pairs.shape[1])] = 1.0

    def _apply(self, z: torch.Tensor, rule: str) -> torch.Tensor:
        if self._pick.device != z.device or self._pick.dtype != z.dtype:
            self._pick = self._pick.to(z.device, z.dtype)
        left, right = z @ self._pick[0], z @ self._pick[1]
        ops = [OPERATORS[o] for o in self.operators]
        return torch.cat([getattr(op, rule)(left, right) if op.arity == 2 else getattr(op, rule)(z) for op in ops],
                         dim=-1)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Candidates of z (..., m) -> (..., |v|)."""
        return self._apply(z, "torch_fn")

    def jet(self, z: torch.Tensor) -> torch.Tensor:
        """Candidates of a jet z (..., C, m) -> (..., C, |v|)."""
        return self._apply(z, "jet_fn")

    def symbolic(self, z: Sequence[sympy.Expr]) -> list[sympy.Expr]:
        """The candidates as sympy expressions of the symbolic inputs z."""
        rows, cols = self.pairs
        out: list[sympy.Expr] = []
        for name in self.operators:
            op = OPERATORS[name]
            if op.arity == 2:
                out.extend(op.sympy_fn(z[a], z[b]) for a, b in zip(rows.tolist(), cols.tolist()))
            else:
                out.extend(op.sympy_fn(v) for v in z)
        return out


def symbolic_lagrangian(q: torch.Tensor, qd: torch.Tensor, weights: Sequence[torch.Tensor],
                        candidates: CandidateBuilder) -> torch.Tensor:
    """L(x; W) for x = (q, q̇) of shape (..., n); per sample (no batch statistics); shape (...)."""
    x = torch.cat((q, qd), dim=-1)
    h = x.new_zeros(x.shape[:-1] + (weights[0].shape[-1],))
    for w in weights:
        h = candidates(torch.cat((x, h), dim=-1)) @ w
    return h.sum(-1)


def symbolic_torque(q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor, weights: Sequence[torch.Tensor],
                    candidates: CandidateBuilder) -> torch.Tensor:
    """Euler–Lagrange torque of L(x; W) in ONE forward pass of jets, per sample, (B, n).

    Each node carries (value, rate, gradient, gradient of the rate) so the derivatives need no
    autograd: the fastest path for the predictor's single samples. (Back-propagating through
    it to train was measured ~1.8x slower than :func:`euler_lagrange.batched_torque`, which
    training uses.)
    Agrees with :func:`euler_lagrange.torque`."""
    n = q.shape[-1]
    x = torch.cat((q, qd), dim=-1)
    eye = torch.eye(2 * n, dtype=x.dtype, device=x.device).expand(x.shape + (2 * n,))
    x_jet = torch.cat((x[..., None, :], torch.cat((qd, qdd), dim=-1)[..., None, :], eye, torch.zeros_like(eye)),
                      dim=-2)
    h_jet = x_jet.new_zeros(x_jet.shape[:-1] + (weights[0].shape[-1],))
    for w in weights:
        h_jet = candidates.jet(torch.cat((x_jet, h_jet), dim=-1)) @ w
    _, _, grad_l, grad_rate = _jet_parts(h_jet.sum(-1, keepdim=True))
    return grad_rate[..., n:, 0] - grad_l[..., :n, 0]


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:])


def _uniform(*shape: int, fan_in: int) -> nn.Parameter:
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class SelectionLayer(nn.Module):
    """k selection heads of one symbolic layer, all heads batched in one set of tensors."""

    def __init__(self, config: SyReNetConfig):
        super().__init__()
        d, k, hidden, v = config.latent, config.heads, config.head_hidden, config.candidates
        self.similarity_map = nn.Linear(d, d)
        self.reduce = _uniform(k, d, fan_in=d)
        self.hidden = _uniform(k, d, hidden, fan_in=d)
        self.hidden_gain = nn.Parameter(torch.ones(k, hidden))
        self.hidden_shift = nn.Parameter(torch.zeros(k, hidden))
        self.logits = _uniform(k, hidden, v, fan_in=hidden)
        self.logit_gain = nn.Parameter(torch.ones(k, v))
        self.logit_shift = nn.Parameter(torch.zeros(k, v))
        # S = gain · S_raw. The reference feeds ones through a |v|×|v| linear layer, so each S_b
        # is a sum of |v| weights: Adam moves it ~|v|·lr per step and it starts with variance
        # 1/3. A gain of |v| on one parameter per candidate keeps exactly those dynamics with
        # 1/|v| of the parameters; without it W = φ·P·S (P ≈ 1/|v|) learns ~300x slower.
        self.scale_gain = float(config.scale_gain or v)
        self.scale = nn.Parameter(torch.randn(k, v) / (math.sqrt(3.0) * self.scale_gain))
        self.gate_current = _uniform(k, v, fan_in=2 * v)
        self.gate_previous = _uniform(k, v, fan_in=2 * v)

    def forward(self, similarity: torch.Tensor, previous_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(similarity d×d, previous layer's P (k, |v|)) -> (W (|v|, k), p = φ·P (k, |v|))."""
        local = self.similarity_map(similarity)                      # (d, d), row by row
        reduced = torch.einsum("rc,kc->kr", local, self.reduce)      # (k, d)
        hidden = torch.einsum("kr,krh->kh", reduced, self.hidden)
        hidden = F.softplus(_layer_norm(hidden) * self.hidden_gain + self.hidden_shift)
        logits = torch.einsum("kh,khv->kv", hidden, self.logits)
        probs = torch.softmax(_layer_norm(logits) * self.logit_gain + self.logit_shift, dim=-1)
        previous = previous_p.prod(0)                                # (|v|,)
        gate = torch.sigmoid((probs * self.gate_current).sum(-1) + self.gate_previous @ previous)
        p = gate[:, None] * probs
        return (p * (self.scale_gain * self.scale)).t(), p


class ContractiveAutoEncoder(nn.Module):
    """|v| → 128 → 128 → d → 128 → 128 → |v| with softplus; penalises ‖∂code/∂input‖²."""

    def __init__(self, size: int, hidden: int, latent: int, probes: int = 0):
        super().__init__()
        self.encoder = nn.ModuleList([nn.Linear(size, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, latent)])
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Softplus(), nn.Linear(hidden, hidden),
                                     nn.Softplus(), nn.Linear(hidden, size))
        self.probes = probes

    def input_gram(self) -> torch.Tensor:
        """W1 W1ᵀ, the part of ‖J‖² that does not depend on the input (reuse it per step)."""
        return self.encoder[0].weight @ self.encoder[0].weight.t()

    def forward(self, u: torch.Tensor, gram: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """u (B, |v|) -> (code (B, d), reconstruction MSE, mean squared Jacobian entry).

        The encoder Jacobian J = W3 diag σ(a2) W2 diag σ(a1) W1 is never formed. Exact
        (probes = 0): with K = W3 diag σ(a2) W2 diag σ(a1), ‖J‖²_F = Σ (K G) ⊙ K where
        G = W1 W1ᵀ (:meth:`input_gram`) is shared by the batch. Estimated (probes = p): Hutchinson's
        ‖J‖²_F = E‖rᵀJ‖² over Rademacher r, p vector–Jacobian products per sample, several
        times cheaper. Squared entries are averaged (‖J‖²_F / (d·|v|)) as the reference does."""
        first, second, third = self.encoder
        a1 = first(u)
        a2 = second(F.softplus(a1))
        code = third(F.softplus(a2))
        slope1, slope2 = torch.sigmoid(a1)[:, None, :], torch.sigmoid(a2)[:, None, :]
        if self.probes:
            signs = torch.randint(0, 2, (u.shape[0], self.probes, code.shape[-1]), device=u.device)
            rows = (2 * signs - 1).to(u.dtype) @ third.weight
        else:
            rows = third.weight.expand(u.shape[0], -1, -1)
        k = ((rows * slope2) @ second.weight) * slope1
        gram = self.input_gram() if gram is None else gram
        squared = ((k @ gram) * k).sum() / max(self.probes, 1)
        jacobian = squared / (u.shape[0] * code.shape[-1] * u.shape[-1])
        reconstruction = F.mse_loss(self.decoder(code), u)
        return code, reconstruction, jacobian


class Selection(NamedTuple):
    """What the selector made of one batch: the weights and the loss terms they imply."""

    weights: list[torch.Tensor]   # per layer, (|v|, k)
    probabilities: list[torch.Tensor]  # per layer, p = φ·P, (k, |v|)
    reconstruction: torch.Tensor
    jacobian: torch.Tensor


class SyReNet(nn.Module):
    """The trainable network: selector (batch) + symbolic per-sample Lagrangian L(x; W)."""

    kind: ClassVar[str] = "syrenet"  # snapshot kind of the trainable state (checkpoints)

    def __init__(self, config: SyReNetConfig = SyReNetConfig()):
        super().__init__()
        config.validate()
        self.config = config
        self.candidates = CandidateBuilder(config)
        size = config.candidates
        self.candidate_norm = nn.LayerNorm(size)
        self.autoencoder = ContractiveAutoEncoder(size, config.ae_hidden, config.latent, config.jacobian_probes)
        self.layers = nn.ModuleList([SelectionLayer(config) for _ in range(config.layers)])
        self.to(config.torch_dtype)

    def selection(self, q: torch.Tensor, qd: torch.Tensor) -> Selection:
        """Selection weights from a batch (B, n). Data enter as constants: the per-sample L
        built from these weights is differentiated with respect to x separately."""
        x = torch.cat((q, qd), dim=-1).detach()
        k, size = self.config.heads, self.config.candidates
        h = x.new_zeros(x.shape[0], k)
        previous_p = x.new_full((k, size), 1.0 / k)
        weights, probabilities, reconstruction, jacobian = [], [], x.new_zeros(()), x.new_zeros(())
        gram = self.autoencoder.input_gram()
        for layer in self.layers:
            v = self.candidates(torch.cat((x, h), dim=-1))
            code, rec, jac = self.autoencoder(self.candidate_norm(v), gram)
            reconstruction, jacobian = reconstruction + rec, jacobian + jac
            magnitude = code.abs()
            similarity = (code.t() @ code) / torch.clamp(magnitude.t() @ magnitude, min=1e-5)
            w, previous_p = layer(similarity, previous_p)
            weights.append(w)
            probabilities.append(previous_p)
            h = v @ w
        return Selection(weights, probabilities, reconstruction, jacobian)

    def lagrangian_fn(self, weights: Sequence[torch.Tensor]) -> LagrangianFn:
        """Per-sample L(q, q̇; W) for euler_lagrange (W fixed wrt x, parameters still flow)."""
        return lambda q, qd: symbolic_lagrangian(q, qd, weights, self.candidates)

    def torque(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor,
               weights: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Inverse dynamics with W from this batch (or the given W), per sample in x."""
        weights = self.selection(q, qd).weights if weights is None else weights
        return el.batched_torque(self.lagrangian_fn(weights), q, qd, qdd)

    def _regularisers(self, sel: Selection) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        entropy = torch.zeros((), dtype=sel.reconstruction.dtype, device=sel.reconstruction.device)
        cross = torch.zeros_like(entropy)
        for p in sel.probabilities:
            log_p = torch.log(p + 1e-5)
            gram = -p @ log_p.t()                                   # gram[j, l] = −Σ p_j log p_l
            k = gram.shape[0]
            entropy = entropy + gram.diagonal().sum()
            if k > 1:
                cross = cross + (gram.sum() - gram.diagonal().sum()) / (k * (k - 1))
        auto_encoder = sel.reconstruction + cfg.lambda_jacobian * sel.jacobian
        total = auto_encoder + cfg.lambda_entropy * entropy - cfg.lambda_cross * cross
        parts = {"reconstruction": sel.reconstruction.item(), "jacobian": sel.jacobian.item(),
                 "entropy": entropy.item(), "cross_entropy": cross.item()}
        return total, parts

    def loss(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor,
             tau: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Paper loss: torque MSE + AE + λ2 ΣH(p) − λ3 mean cross-entropy between heads."""
        sel = self.selection(q, qd)
        predicted = el.batched_torque(self.lagrangian_fn(sel.weights), q, qd, qdd)
        return self._total(sel, F.mse_loss(predicted, tau), "torque_mse")

    def integral_loss(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor, tau: torch.Tensor,
                      window: int, selection_size: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The paper loss with the torque MSE taken on integral (momentum-form) rows, SPEC §2b.

        The batch is consecutive gap-free runs of ``window`` samples; each run's per-sample
        Euler–Lagrange residuals are summed with :func:`integral.window_weights`, the rows the
        refit and the held-out score use. Per sample, q̈ = Δq̇/Δt carries sensor noise as large
        as the signal and the MSE fits that noise; summed over a window the velocity noise
        telescopes away. The selection weights come from every k-th sample, at most
        ``selection_size`` of them: the selector's cost grows with its batch, and neighbouring
        samples tell it nothing new."""
        step = max(1, q.shape[0] // selection_size) if selection_size else 1
        sel = self.selection(q[::step], qd[::step])
        rows = integral.torque_rows(self.lagrangian_fn(sel.weights), q, qd, qdd, tau, window)
        return self._total(sel, rows.square().mean(), "integral_mse")

    def _total(self, sel: Selection, mse: torch.Tensor, name: str) -> tuple[torch.Tensor, dict[str, float]]:
        extra, parts = self._regularisers(sel)
        total = mse + extra
        return total, {"total": total.item(), name: mse.item(), **parts}

    def direct_loss(self, q: torch.Tensor, qd: torch.Tensor,
                    lagrangian_target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Fit L itself (paper Table 1, simulation only): MSE of L + the same regularisers."""
        sel = self.selection(q, qd)
        mse = F.mse_loss(symbolic_lagrangian(q, qd, sel.weights, self.candidates), lagrangian_target)
        return self._total(sel, mse, "lagrangian_mse")

    @torch.no_grad()
    def freeze(self, q: torch.Tensor, qd: torch.Tensor) -> "FrozenSyReNet":
        """The closed-form model at the selection weights of a reference batch."""
        was_training = self.training
        self.eval()
        weights = [w.detach().clone(memory_format=torch.contiguous_format) for w in self.selection(q, qd).weights]
        self.train(was_training)
        return FrozenSyReNet(self.config, weights)

    def to_payload(self) -> dict:
        return self.state_payload()

    @classmethod
    def from_payload(cls, payload: dict) -> "SyReNet":
        return cls.from_state_payload(payload)

    def state_payload(self) -> dict:
        """Trainable state for checkpoints: config + every parameter, as JSON (never pickle)."""
        return {"config": self.config.to_json(),
                "parameters": {name: tensor_to_json(t) for name, t in self.state_dict().items()}}

    @classmethod
    def from_state_payload(cls, payload: object) -> "SyReNet":
        """Rebuild from :meth:`state_payload`. Names and declared shapes are checked against
        the config on the meta device (no memory) before any tensor is decoded or the network
        is built, so a small payload declaring a large config allocates nothing."""
        if not isinstance(payload, dict) or set(payload) != {"config", "parameters"}:
            raise SnapshotError("state payload: expected keys config, parameters")
        config = SyReNetConfig.from_json(payload["config"])
        with torch.device("meta"):
            expected = {name: (list(t.shape), t.dtype) for name, t in cls(config).state_dict().items()}
        given = payload["parameters"]
        if not isinstance(given, dict) or set(given) != set(expected):
            raise SnapshotError("state payload: parameter names do not match the config")
        for name, (shape, _) in expected.items():
            declared = given[name].get("shape") if isinstance(given[name], dict) else None
            if declared != shape:
                raise SnapshotError(f"{name}: shape {declared!r} != expected {shape}")
        # Each tensor's bytes must match its shape: what is allocated now is what the payload carries.
        state = {name: tensor_from_json(given[name], name).to(dtype) for name, (_, dtype) in expected.items()}
        model = cls(config)
        model.load_state_dict(state)
        return model


@dataclass
class FrozenSyReNet:
    """A SyReNet frozen at its selection weights: a closed-form L(q, q̇) (Model protocol)."""

    kind: ClassVar[str] = "frozen_syrenet"
    config: SyReNetConfig
    weights: list[torch.Tensor]
    _candidates: CandidateBuilder = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.config.validate()
        self._candidates = CandidateBuilder(self.config)
        shape = (self.config.candidates, self.config.heads)
        if len(self.weights) != self.config.layers:
            raise SnapshotError(f"weights: {len(self.weights)} layers, config says {self.config.layers}")
        for i, w in enumerate(self.weights):
            if tuple(w.shape) != shape:
                raise SnapshotError(f"weights[{i}]: shape {list(w.shape)} != expected {list(shape)}")
            if not torch.isfinite(w).all():
                raise SnapshotError(f"weights[{i}]: contains non-finite values")

    def to(self, target: torch.device | torch.dtype | str) -> "FrozenSyReNet":
        """A copy on another device or dtype."""
        return FrozenSyReNet(self.config, [w.to(target) for w in self.weights])

    def _inputs(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Inputs in the weights' dtype and device (e.g. float64 states for a float32 model)."""
        w = self.weights[0]
        return [t.to(device=w.device, dtype=w.dtype) for t in tensors]

    def lagrangian(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        q, qd = self._inputs(q, qd)
        return symbolic_lagrangian(q, qd, self.weights, self._candidates)

    def lagrangian_fn(self) -> LagrangianFn:
        return self.lagrangian

    def torque(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        """τ per sample, (B, n), no graph kept. Small batches (the predictor's single samples)
        take the one-pass jet evaluation, which has fewer kernels; large batches the
        autograd path, which moves less memory. Both equal euler_lagrange.torque."""
        q, qd, qdd = self._inputs(q, qd, qdd)
        if q.shape[0] <= JET_MAX_BATCH:
            with torch.no_grad():
                return symbolic_torque(q, qd, qdd, self.weights, self._candidates)
        return el.batched_torque(self.lagrangian, q, qd, qdd, create_graph=False).detach()

    def _pruned(self, digits: int, keep_fraction: float, max_terms: int
                ) -> tuple[sympy.Expr, list[list[sympy.Symbol]], list[dict[int, sympy.Expr]], list[set[int]]]:
        """L as a sum of named last-layer heads, every layer's pruned head definitions in the
        head symbols h{layer}_{j}, and the heads L reaches (see :meth:`equation`)."""
        n, k = self.config.n_joints, self.config.heads
        x = list(sympy.symbols(" ".join(f"q{i + 1}" for i in range(n)))) if n > 1 else [sympy.Symbol("q1")]
        x += list(sympy.symbols(" ".join(f"qd{i + 1}" for i in range(n)))) if n > 1 else [sympy.Symbol("qd1")]
        head_symbols = [[sympy.Symbol(f"h{layer + 1}_{j + 1}") for j in range(k)] for layer in range(self.config.layers)]
        zero = [sympy.Integer(0)] * k
        definitions: list[dict[int, sympy.Expr]] = []
        for layer, w in enumerate(self.weights):
            previous = head_symbols[layer - 1] if layer else zero
            cands = self._candidates.symbolic(x + list(previous))
            heads: dict[int, sympy.Expr] = {}
            for j in range(k):
                column = w[:, j].double()
                largest = float(column.abs().max())
                if largest == 0.0:
                    continue
                order = torch.argsort(column.abs(), descending=True)[:max_terms].tolist()
                terms = [sympy.Float(float(column[b]), digits) * cands[b]
                         for b in order if abs(float(column[b])) >= keep_fraction * largest]
                heads[j] = sympy.Add(*terms)
            definitions.append(heads)
        # Keep only heads that L can reach, walking back from the last layer.
        used = [set() for _ in definitions]
        used[-1] = set(definitions[-1])
        for layer in range(len(definitions) - 1, 0, -1):
            for j in used[layer]:
                for s in definitions[layer][j].free_symbols:
                    if s in head_symbols[layer - 1]:
                        used[layer - 1].add(head_symbols[layer - 1].index(s))
        lagrangian = sympy.Add(*(sympy.Symbol(f"h{len(definitions)}_{j + 1}") for j in sorted(used[-1])))
        return lagrangian, head_symbols, definitions, used

    def expression(self, digits: int = 15, keep_fraction: float = 0.05, max_terms: int = 6) -> sympy.Expr:
        """The pruned L as one sympy expression in q1.., qd1.. (heads inlined, not expanded):
        what :func:`regression.expression_terms` reads the network's structure from."""
        return self._inlined(self._pruned(digits, keep_fraction, max_terms))

    @staticmethod
    def _inlined(pruned: tuple, max_chars: float = math.inf) -> sympy.Expr | None:
        """The heads of :meth:`_pruned` substituted into L, None once its text passes ``max_chars``."""
        inline, head_symbols, definitions, used = pruned
        for layer in range(len(definitions) - 1, -1, -1):
            inline = inline.xreplace({head_symbols[layer][j]: definitions[layer][j] for j in used[layer]})
            if math.isfinite(max_chars) and len(str(inline)) > max_chars:
                return None
        return inline

    def equation(self, digits: int = 4, keep_fraction: float = 0.05, max_terms: int = 6,
                 max_chars: int = 4000) -> str:
        """Readable pruned Lagrangian in q1.., qd1...

        In each head, candidates below ``keep_fraction`` of the head's largest |weight| are
        dropped and at most ``max_terms`` kept. Heads are inlined while the text stays under
        ``max_chars``; otherwise the used heads are listed as named definitions, so the size
        never explodes (a full expansion of a dense network does)."""
        pruned = self._pruned(digits, keep_fraction, max_terms)
        inline = self._inlined(pruned, max_chars)
        if inline is not None:
            return f"L = {sympy.sstr(inline)}"
        lagrangian, _, definitions, used = pruned
        lines = [f"L = {lagrangian}"]
        for layer in range(len(definitions) - 1, -1, -1):
            lines += [f"  h{layer + 1}_{j + 1} = {definitions[layer][j]}" for j in sorted(used[layer])]
        return "\n".join(lines)

    def to_payload(self) -> dict:
        return {"config": self.config.to_json(), "weights": [tensor_to_json(w) for w in self.weights]}

    @classmethod
    def from_payload(cls, payload: dict) -> "FrozenSyReNet":
        """Validate and rebuild; SnapshotError with a reason on anything unexpected."""
        if not isinstance(payload, dict) or set(payload) != {"config", "weights"}:
            raise SnapshotError("frozen_syrenet: expected keys config, weights")
        config = SyReNetConfig.from_json(payload["config"])
        raw = payload["weights"]
        if not isinstance(raw, list) or len(raw) != config.layers:
            raise SnapshotError(f"frozen_syrenet: weights must be a list of {config.layers} tensors")
        weights = [tensor_from_json(w, f"weights[{i}]").to(config.torch_dtype) for i, w in enumerate(raw)]
        return cls(config, weights)
