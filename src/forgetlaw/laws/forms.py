"""Scaling laws as data: formula, parameters, columns read, column predicted, bounds, start grid.

Every law is fitted in log space: it returns log(predicted loss) and the gradient of that with
respect to its *internal* parameters, vectorized over K parameter sets at once. Positive scale
parameters (E, A, B) are optimized as their logs, so they stay positive without a bound, while
exponents (alpha, beta, gamma) are plain numbers with wide symmetric bounds: the data decides their
sign (at tiny scale forgetting can grow with N, see docs/laws.md).

Shapes: `theta` is [K, P]; each feature is [K, n] or [1, n] (broadcast); outputs are [K, n].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from forgetlaw.errors import UserError

Features = dict[str, np.ndarray]
LogPredict = Callable[[np.ndarray, Features], tuple[np.ndarray, list[np.ndarray]]]


@dataclass(frozen=True)
class Param:
    """One fitted parameter. `log=True`: the optimizer works on log(value), value = exp(internal)."""

    name: str
    log: bool
    lower: float  # bounds on the internal value
    upper: float
    grid: tuple[float, ...]  # internal start values; the law's start grid is their product

    @property
    def internal_name(self) -> str:
        return f"log_{self.name}" if self.log else self.name


@dataclass(frozen=True)
class Confound:
    """When `column` takes one value in a table, `params` are confounded; `note` says how. If
    `rescue` = (column, k) and that column takes >= k values, the first exponent in `params` is
    still identified through it (one model size: alpha is identified through p)."""

    column: str
    params: tuple[str, ...]
    note: str
    rescue: tuple[str, int] | None = None


def _f(params: dict, name: str) -> np.ndarray:
    return np.asarray(params[name], dtype=float)


@dataclass(frozen=True)
class ForgettingForm:
    """Forgetting F(p) = L_pt - L0 = shift + scale * g(p), g(p) = A D^beta N^-alpha h(p), h(0) = 1.

    `shape` picks h: "power" h = (1 + B p)^-alpha (the paper's: injection acts like a larger model),
    "exp" h = exp(-B p) (the data-mixing-law shape). Each form carries its own inverse, so the
    planner needs no law-specific code. Parameter values may be arrays (one per bootstrap draw).
    """

    shape: str
    shift_scale: Callable[[dict[str, np.ndarray], np.ndarray], tuple]

    def log_g0(self, params: dict, model_size: float, unique_tokens: float) -> np.ndarray:
        return (np.log(_f(params, "A")) + _f(params, "beta") * np.log(unique_tokens)
                - _f(params, "alpha") * np.log(model_size))

    def log_h(self, params: dict, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if self.shape == "power":
            return -_f(params, "alpha") * np.log1p(_f(params, "B") * p)
        return -_f(params, "B") * p

    def p_for(self, params: dict, log_ratio: np.ndarray) -> np.ndarray:
        """The p > 0 with log h(p) = -log_ratio (log_ratio > 0); inf where no p reaches it."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.shape == "power":
                alpha, b = _f(params, "alpha"), _f(params, "B")
                # Exponent capped at 700 (exp overflow); anything that large is p >> 1 anyway.
                exponent = np.minimum(log_ratio / np.where(alpha > 0, alpha, 1.0), 700.0)
                return np.where((alpha > 0) & (b > 0), np.expm1(exponent) / b, np.inf)
            b = _f(params, "B")
            return np.where(b > 0, log_ratio / np.where(b > 0, b, 1.0), np.inf)

    def log_h_least(self, params: dict) -> np.ndarray:
        """log h where forgetting is least over p in [0, 1]: p -> 1 when h falls with p, else p = 0."""
        if self.shape == "power":
            return -np.maximum(_f(params, "alpha"), 0.0) * np.log1p(_f(params, "B"))
        return -np.maximum(_f(params, "B"), 0.0)


@dataclass(frozen=True)
class Law:
    name: str
    formula: str
    target: str  # the column the law predicts
    columns: tuple[str, ...]  # the columns it reads
    params: tuple[Param, ...]
    model_column: str  # the size axis `--holdout largest-model` splits on
    data_column: str  # the data axis `--holdout largest-tokens` splits on
    role: str  # "forgetting" | "finetuning" | "loss": the slot it takes in a saved fit file
    log_predict: LogPredict = field(repr=False)
    features_used: tuple[str, ...] = ("log_n", "log_d")  # what `features` must precompute
    # Forgetting laws only: how forgetting depends on p, in the form the planner inverts.
    forgetting: ForgettingForm | None = field(default=None, repr=False)
    # What a column that takes one value in the table leaves unidentified (fit diagnostics).
    confounds: tuple[Confound, ...] = ()

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def lower(self) -> np.ndarray:
        return np.array([p.lower for p in self.params])

    @property
    def upper(self) -> np.ndarray:
        return np.array([p.upper for p in self.params])

    def start_grid(self) -> np.ndarray:
        """All combinations of the per-parameter start values, [S, P] internal."""
        axes = np.meshgrid(*[np.asarray(p.grid, dtype=float) for p in self.params], indexing="ij")
        return np.stack([a.ravel() for a in axes], axis=1)

    def to_public(self, theta: np.ndarray) -> np.ndarray:
        """Internal [.., P] -> the named parameters' values."""
        out = np.array(theta, dtype=float, copy=True)
        for j, p in enumerate(self.params):
            if p.log:
                out[..., j] = np.exp(out[..., j])
        return out

    def to_internal(self, values: dict[str, float] | np.ndarray) -> np.ndarray:
        if isinstance(values, dict):
            values = np.array([float(values[n]) for n in self.param_names])
        out = np.array(values, dtype=float, copy=True)
        for j, p in enumerate(self.params):
            if p.log:
                out[..., j] = np.log(out[..., j])
        return out

    def features(self, columns: dict[str, np.ndarray]) -> Features:
        """Precompute the logs each law uses once per table, not once per evaluation."""
        feats: Features = {}
        if "model_size" in columns:
            feats["log_n"] = np.log(columns["model_size"])
        for name in ("tokens", "unique_tokens"):
            if name in columns and name == self.data_column:
                feats["log_d"] = np.log(columns[name])
        if "injection" in columns:
            feats["p"] = np.asarray(columns["injection"], dtype=float)
            feats["log_1mp"] = np.log1p(-feats["p"])
        if "pretrain_loss_before" in columns:
            feats["log_l0"] = np.log(columns["pretrain_loss_before"])
        # Only what the law reads: every extra feature is copied on each batched evaluation.
        return {k: v for k, v in feats.items() if k in self.features_used}

    def predict(self, params: dict[str, float] | np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Predicted target for one parameter set (public values) at the given columns."""
        theta = self.to_internal(params).reshape(1, -1)
        feats = {k: np.atleast_1d(np.asarray(v, dtype=float)).reshape(1, -1) for k, v in self.features(
            {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in columns.items()}).items()}
        log_pred, _ = self.log_predict(theta, feats)
        return np.exp(log_pred[0])


def _col(theta: np.ndarray, j: int) -> np.ndarray:
    return theta[:, j : j + 1]


def _softmax_terms(*terms: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """log(sum exp(terms)) and each term's share, without overflow (faster than np.logaddexp)."""
    top = terms[0]
    for t in terms[1:]:
        top = np.maximum(top, t)
    exps = [np.exp(t - top) for t in terms]
    total = exps[0]
    for e in exps[1:]:
        total = total + e
    shares = [e / total for e in exps]
    return top + np.log(total), shares


# ---- chinchilla: loss = E + A / N^alpha + B / D^beta -------------------------------------------
def _chinchilla(theta: np.ndarray, f: Features):
    log_e, log_a, log_b, alpha, beta = (_col(theta, j) for j in range(5))
    log_n, log_d = f["log_n"], f["log_d"]
    log_pred, (w_e, w_a, w_b) = _softmax_terms(
        np.broadcast_to(log_e, (theta.shape[0], log_n.shape[1])), log_a - alpha * log_n, log_b - beta * log_d
    )
    return log_pred, [w_e, w_a, w_b, -w_a * log_n, -w_b * log_d]


# ---- finetuning: loss = E + A / (N^alpha D^beta [(1 - p)^gamma]) --------------------------------
def _finetuning(theta: np.ndarray, f: Features):
    log_e, log_a, alpha, beta = (_col(theta, j) for j in range(4))
    log_n, log_d = f["log_n"], f["log_d"]
    log_pred, (w_e, w_a) = _softmax_terms(
        np.broadcast_to(log_e, (theta.shape[0], log_n.shape[1])), log_a - alpha * log_n - beta * log_d
    )
    return log_pred, [w_e, w_a, -w_a * log_n, -w_a * log_d]


def _finetuning_injection(theta: np.ndarray, f: Features):
    log_e, log_a, alpha, beta, gamma = (_col(theta, j) for j in range(5))
    log_n, log_d, log_1mp = f["log_n"], f["log_d"], f["log_1mp"]
    log_pred, (w_e, w_a) = _softmax_terms(
        np.broadcast_to(log_e, (theta.shape[0], log_n.shape[1])),
        log_a - alpha * log_n - beta * log_d - gamma * log_1mp,
    )
    return log_pred, [w_e, w_a, -w_a * log_n, -w_a * log_d, -w_a * log_1mp]


# ---- forgetting laws: pretrain_loss = floor + A * D^beta / ((1 + B p) N)^alpha -------------------
def _forgetting_term(theta: np.ndarray, f: Features):
    """log g, g = A D^beta / ((1 + B p) N)^alpha, and what its gradient needs."""
    log_a, log_b, alpha, beta = (_col(theta, j) for j in range(4))
    log_1bp = np.log1p(np.exp(log_b) * f["p"])
    log_n_eff = log_1bp + f["log_n"]  # log((1 + B p) N)
    log_g = log_a + beta * f["log_d"] - alpha * log_n_eff
    return log_g, log_1bp, log_n_eff


def _forgetting_grads(w_g: np.ndarray, theta: np.ndarray, f: Features, log_1bp: np.ndarray, log_n_eff: np.ndarray):
    """d log pred / d(log A, log B, alpha, beta) = w_g * d log g / d(...), w_g = d log pred / d log g."""
    alpha = _col(theta, 2)
    bp_share = -np.expm1(-log_1bp)  # B p / (1 + B p)
    return [w_g, w_g * (-alpha * bp_share), -w_g * log_n_eff, w_g * f["log_d"]]


def _forgetting_additive(theta: np.ndarray, f: Features):
    log_g, log_1bp, log_n_eff = _forgetting_term(theta, f)
    log_pred, (_, w_g) = _softmax_terms(np.broadcast_to(f["log_l0"], log_g.shape), log_g)
    return log_pred, _forgetting_grads(w_g, theta, f, log_1bp, log_n_eff)


def _forgetting_multiplicative(theta: np.ndarray, f: Features):
    log_g, log_1bp, log_n_eff = _forgetting_term(theta, f)
    log_1g, (_, w_g) = _softmax_terms(np.zeros_like(log_g), log_g)  # log(1 + g)
    return f["log_l0"] + log_1g, _forgetting_grads(w_g, theta, f, log_1bp, log_n_eff)


def _forgetting_floor(theta: np.ndarray, f: Features):
    log_g, log_1bp, log_n_eff = _forgetting_term(theta, f)
    c = _col(theta, 4)
    log_floor = f["log_l0"] + np.log1p(-c)  # floor = (1 - C) L0
    log_pred, (w_floor, w_g) = _softmax_terms(np.broadcast_to(log_floor, log_g.shape), log_g)
    return log_pred, _forgetting_grads(w_g, theta, f, log_1bp, log_n_eff) + [-w_floor / (1.0 - c)]


def _shift_scale_additive(params, l0):
    return np.zeros_like(np.asarray(l0, dtype=float)), np.ones_like(np.asarray(l0, dtype=float))


def _shift_scale_multiplicative(params, l0):
    return np.zeros_like(np.asarray(l0, dtype=float)), np.asarray(l0, dtype=float)


def _shift_scale_floor(params, l0):
    return -np.asarray(params["C"]) * l0, np.ones_like(np.asarray(l0, dtype=float))


# Bounds are wide on purpose: they keep the optimizer in the finite range of exp/log, never decide
# a sign. A parameter that ends on one is reported (diagnostics.at_bound and a warning).
_EXPONENT = (-5.0, 5.0)
_LOG_SCALE = (-40.0, 80.0)

# Epoch AI's start grid for the Chinchilla law (Besiroglu et al. 2024, data_analysis.ipynb).
_CHINCHILLA = Law(
    name="chinchilla",
    formula="loss = E + A / N^alpha + B / D^beta   (N = model_size, D = tokens)",
    target="loss",
    columns=("model_size", "tokens"),
    params=(
        Param("E", True, -10.0, 10.0, (-1.0, -0.5, 0.0, 0.5, 1.0)),
        Param("A", True, *_LOG_SCALE, (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)),
        Param("B", True, *_LOG_SCALE, (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)),
        Param("alpha", False, *_EXPONENT, (0.0, 0.5, 1.0, 1.5, 2.0)),
        Param("beta", False, *_EXPONENT, (0.0, 0.5, 1.0, 1.5, 2.0)),
    ),
    model_column="model_size",
    data_column="tokens",
    role="loss",
    log_predict=_chinchilla,
    confounds=(Confound("model_size", ("E", "A", "alpha"), "only E + A/N^alpha is identified, a constant"),
               Confound("tokens", ("E", "B", "beta"), "only E + B/D^beta is identified, a constant")),
)

_FORGETTING_PARAMS = (
    Param("A", True, *_LOG_SCALE, (-5.0, 0.0, 5.0, 10.0)),
    Param("B", True, -15.0, 15.0, (0.0, 3.0, 6.0)),
    Param("alpha", False, *_EXPONENT, (-0.5, 0.0, 0.5, 1.0)),
    Param("beta", False, *_EXPONENT, (-0.5, 0.0, 0.5, 1.0)),
)
_FORGETTING_COLUMNS = ("model_size", "unique_tokens", "injection", "pretrain_loss_before")
_FORGETTING_FEATURES = ("log_n", "log_d", "p", "log_l0")

_ONE_D = Confound("unique_tokens", ("A", "beta"), "only A*D^beta is identified, beta is not")
_POWER_CONFOUNDS = (
    Confound("model_size", ("A", "alpha"), "only A*N^-alpha is identified, a constant at that N",
             rescue=("injection", 3)),
    _ONE_D,
    Confound("injection", ("B", "alpha"), "the effect of p is not measured: B is not identified"),
)
_EXP_CONFOUNDS = (
    Confound("model_size", ("A", "alpha"), "only A*N^-alpha is identified, alpha is not"),
    _ONE_D,
    Confound("injection", ("B",), "the effect of p is not measured: B is not identified"),
)


def _forgetting_law(name: str, formula: str, log_predict, shift_scale, extra_params: tuple[Param, ...] = (),
                    params: tuple[Param, ...] = _FORGETTING_PARAMS, shape: str = "power") -> Law:
    """The forgetting laws share columns, roles and the paper's parameters; they differ in form."""
    return Law(
        name=name,
        formula=formula,
        target="pretrain_loss",
        columns=_FORGETTING_COLUMNS,
        params=params + extra_params,
        model_column="model_size",
        data_column="unique_tokens",
        role="forgetting",
        log_predict=log_predict,
        features_used=_FORGETTING_FEATURES,
        forgetting=ForgettingForm(shape, shift_scale),
        confounds=_POWER_CONFOUNDS if shape == "power" else _EXP_CONFOUNDS,
    )


_FORGETTING = _forgetting_law(
    "forgetting",
    "pretrain_loss = L0 + A * D^beta / ((1 + B p) N)^alpha   (L0 = pretrain_loss_before, D = unique_tokens, p = injection)",
    _forgetting_additive, _shift_scale_additive,
)
_FORGETTING_MULTIPLICATIVE = _forgetting_law(
    "forgetting-multiplicative",
    "pretrain_loss = L0 * (1 + A * D^beta / ((1 + B p) N)^alpha)",
    _forgetting_multiplicative, _shift_scale_multiplicative,
)
_FORGETTING_FLOOR = _forgetting_law(
    "forgetting-floor",
    "pretrain_loss = (1 - C) * L0 + A * D^beta / ((1 + B p) N)^alpha   (C = 0: the paper's law)",
    _forgetting_floor, _shift_scale_floor,
    # C < 1 keeps the floor positive; C < 0 (a floor above L0) is allowed so the sign is the data's.
    extra_params=(Param("C", False, -1.0, 0.99, (0.0, 0.2)),),
)

# ---- forgetting-exp: pretrain_loss = L0 + A * D^beta * N^-alpha * exp(-B p) ----------------------
def _forgetting_exp(theta: np.ndarray, f: Features):
    log_a, b, alpha, beta = (_col(theta, j) for j in range(4))
    log_g = log_a + beta * f["log_d"] - alpha * f["log_n"] - b * f["p"]
    log_pred, (_, w_g) = _softmax_terms(np.broadcast_to(f["log_l0"], log_g.shape), log_g)
    return log_pred, [w_g, -w_g * f["p"], -w_g * f["log_n"], w_g * f["log_d"]]


_FORGETTING_EXP = _forgetting_law(
    "forgetting-exp",
    "pretrain_loss = L0 + A * D^beta * N^-alpha * exp(-B p)   (the data-mixing-law shape in p)",
    _forgetting_exp, _shift_scale_additive, shape="exp",
    # B is a plain number: its sign is the data's (B < 0: injection adds forgetting).
    params=(_FORGETTING_PARAMS[0], Param("B", False, -100.0, 1000.0, (0.0, 3.0, 10.0, 30.0)),
            *_FORGETTING_PARAMS[2:]),
)

_FINETUNING_PARAMS = (
    Param("E", True, -10.0, 10.0, (-1.0, 0.0, 1.0)),
    Param("A", True, *_LOG_SCALE, (0.0, 5.0, 10.0, 15.0)),
    Param("alpha", False, *_EXPONENT, (0.0, 0.5, 1.0)),
    Param("beta", False, *_EXPONENT, (0.0, 0.5, 1.0)),
)

_FINETUNING = Law(
    name="finetuning",
    formula="finetune_loss = E + A / (N^alpha * D^beta)   (D = unique_tokens)",
    target="finetune_loss",
    columns=("model_size", "unique_tokens"),
    params=_FINETUNING_PARAMS,
    model_column="model_size",
    data_column="unique_tokens",
    role="finetuning",
    log_predict=_finetuning,
    confounds=(Confound("model_size", ("A", "alpha"), "only A*N^-alpha is identified, alpha is not"),
               Confound("unique_tokens", ("A", "beta"), "only A*D^beta is identified, beta is not")),
)

_FINETUNING_INJECTION = Law(
    name="finetuning-injection",
    formula="finetune_loss = E + A / (N^alpha * D^beta * (1 - p)^gamma)   (gamma = 0: no effect of p)",
    target="finetune_loss",
    columns=("model_size", "unique_tokens", "injection"),
    params=_FINETUNING_PARAMS + (Param("gamma", False, *_EXPONENT, (0.0,)),),
    model_column="model_size",
    data_column="unique_tokens",
    role="finetuning",
    log_predict=_finetuning_injection,
    features_used=("log_n", "log_d", "log_1mp"),
    confounds=(Confound("model_size", ("A", "alpha"), "only A*N^-alpha is identified, alpha is not"),
               Confound("unique_tokens", ("A", "beta"), "only A*D^beta is identified, beta is not"),
               Confound("injection", ("gamma",), "the effect of p is not measured: gamma is not identified")),
)

LAWS: dict[str, Law] = {
    law.name: law
    for law in (
        _CHINCHILLA,
        _FORGETTING,
        _FORGETTING_MULTIPLICATIVE,
        _FORGETTING_FLOOR,
        _FORGETTING_EXP,
        _FINETUNING,
        _FINETUNING_INJECTION,
    )
}


def get_law(name: str | Law) -> Law:
    if isinstance(name, Law):
        return name
    if name not in LAWS:
        raise UserError(f"unknown law {name!r} (--law); choose one of: {', '.join(LAWS)}")
    return LAWS[name]
