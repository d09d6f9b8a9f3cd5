"""Post-training quantization of a DLRM, and the golden model of the quantized network.

The scheme (what the chip computes; every rescale a gemmlowp multiplier and
right shift, :func:`quantize_multiplier`, applied by
:func:`seedchip.sim.golden.requantize`):

* **Weights**: symmetric int8 per output channel, ``-127..127``; biases
  int32 at the accumulator's scale. A layer's input may carry a different
  scale per input column (the top MLP's first layer reads ``[x, Z]``, the
  dense vector and the interaction outputs, each with its own scale): the
  column scales are folded into the weights before the per-channel
  quantization (``W'[j, k] = W[j, k] * s_in[k]``, ``s_acc[j] =
  max_k |W'[j, k]| / 127``), so one int8 GEMM with int32 accumulation
  serves any input scales and ``acc * s_acc[j]`` is the layer's real output.
* **Activations**: symmetric int8 with one scale per tensor from the
  calibration data: ``s = stat(|a|) / 127`` with ``stat`` the maximum
  (``method="max"``) or the ``percentile``-th percentile (``method=
  "percentile"``, 99.99 by default; values above it saturate). The dense
  input is quantized on the host (round half away from zero, clipped).
* **Embeddings**: int8 with one symmetric scale per table (``max|w|/127``,
  as NVIDIA's and Intel's int8 DLRM stacks), integer sum pooling on the chip,
  the pooled int32 sum requantized straight to that table's pooled scale.
* **Interaction**: each vector of ``T = [x, e_1, ..., e_F]`` has its own
  scale ``s_T[v]`` (x: the bottom MLP's output scale; e_t: table t's pooled
  scale, from the calibration data); pair p = (i, j) has its own output
  scale ``s_Z[p]`` (from the calibration data, like an output channel), and
  its int32 dot product is requantized by ``s_T[i] * s_T[j] / s_Z[p]``: the
  chip's INTERACT with PARAMS, one multiplier and shift per pair. (One scale
  for all of T and all of Z made the Kaggle shape's mean |dCTR| 0.018:
  pooled vectors are several times smaller than x, and the e.e pairs tens of
  times smaller than the x.e pairs, so most pairs kept 2-3 levels.)
* **Output**: the last top layer stays int32 (accumulator + bias); the
  host multiplies by ``s_acc`` and applies the sigmoid.

A requantization factor must be below 1 (the chip shifts right only): an
output scale is raised where the calibration would make it finer than its
input's (``s_out >= s_acc * (1 + 2**-20)``); the quantizer reports each such
raise in :attr:`QuantDLRM.notes`.

:class:`QuantDLRM` holds the integer network; :meth:`QuantDLRM.forward_int`
is the golden model the chip matches bit for bit (built from the same
per-operation golden functions as the chip's executor);
:meth:`QuantDLRM.fake_quant_logits` runs the float model with chosen stages
quantized, for the per-layer cost of quantization.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..protocol import check_requant_params
from ..sim import golden
from .dlrm import DLRMFloat, Inputs, ModelError, bag_sum, interact, sigmoid

__all__ = ["quantize_multiplier", "QLayer", "QTable", "QuantDLRM", "quantize", "METHODS",
           "scale_span"]

#: Calibration statistics of activations.
METHODS = ("max", "percentile")
_MARGIN = 1.0 + 2.0 ** -20
_Q = 127


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``(multiplier, shift)`` with ``multiplier * 2**-31 * 2**-shift`` ~ ``real``,
    multiplier 0 or in [2**30, 2**31), shift 0..31 (gemmlowp's
    QuantizeMultiplierSmallerThanOne). ``real`` must be in [0, 1); factors
    below 2**-32 become (0, 0) (the output is 0)."""
    real = float(real)
    if not 0.0 <= real < 1.0:
        raise ValueError(f"a requantization factor must be in [0, 1), not {real!r}")
    if real < 2.0 ** -32:
        return 0, 0
    m, e = math.frexp(real)               # real = m * 2**e, 0.5 <= m < 1
    mult = int(round(m * (1 << 31)))
    if mult == 1 << 31:             # m rounded up to 1
        if e == 0:
            mult = (1 << 31) - 1    # real just below 1: the largest factor below 1
        else:
            mult //= 2
            e += 1
    shift = -e
    if shift > 31:
        mult = int(round(real * 2.0 ** 62))       # keep shift 31: a smaller multiplier
        if mult < 1 << 30:
            return 0, 0
        shift = 31
    check_requant_params(mult, shift)
    return mult, shift


def _round(x):
    """Round half away from zero (as the hardware's requantizer rounds)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_dense(x, scale):
    return np.clip(_round(np.asarray(x, np.float64) / scale), -_Q, _Q).astype(np.int64)


@dataclasses.dataclass
class QLayer:
    """One quantized Linear: ``wq`` int8 ``[out, in]``, ``bias`` int32 ``[out]``,
    ``s_acc`` ``[out]`` (the accumulator's scale per channel), ``s_in`` ``[in]``;
    with an int8 output ``s_out`` and per-channel ``multiplier``/``shift``,
    else (the last layer) int32 output and ``s_out`` None."""
    name: str
    wq: np.ndarray
    bias: np.ndarray
    s_acc: np.ndarray
    s_in: np.ndarray
    relu: bool
    s_out: float | None = None
    multiplier: np.ndarray | None = None
    shift: np.ndarray | None = None

    @property
    def k(self) -> int:
        return self.wq.shape[1]

    @property
    def n(self) -> int:
        return self.wq.shape[0]

    @property
    def requant(self) -> bool:
        return self.s_out is not None

    def run(self, a):
        """The chip's GEMM on int8 ``a`` ``[B, in]``: int8 ``[B, out]`` or int32."""
        return golden.gemm(np.asarray(a, np.int64), self.wq.T.astype(np.int64), self.bias,
                           self.multiplier, self.shift, relu=self.relu)

    def dequant_weight(self):
        return self.wq * self.s_acc[:, None] / self.s_in[None, :]

    def dequant_bias(self):
        return self.bias * self.s_acc


@dataclasses.dataclass
class QTable:
    """An int8 table with its scale and the requantization of its pooled sums to its
    pooled scale (``QuantDLRM.s_T[1 + t]``)."""
    eq: np.ndarray
    scale: float
    multiplier: int
    shift: int


@dataclasses.dataclass
class QuantDLRM:
    """The quantized DLRM: integer weights and tables, every scale, every rescale."""
    arch: object
    s_dense: float
    bot: list
    top: list
    tables: list
    #: the scale of each vector of T: x, then every table's pooled vector
    s_T: np.ndarray
    #: the scale of each interaction output (pair), and its rescale
    s_Z: np.ndarray
    z_multiplier: np.ndarray
    z_shift: np.ndarray
    method: str = "percentile"
    percentile: float = 99.99
    notes: list = dataclasses.field(default_factory=list)

    # -- the golden integer model ------------------------------------------------------
    def quantize_inputs(self, inputs: Inputs) -> np.ndarray:
        """The int8 dense features the host sends."""
        return quantize_dense(inputs.dense, self.s_dense)

    def forward_int(self, inputs: Inputs) -> dict:
        """Every integer tensor of the quantized network (int64 arrays):
        ``dense``, ``bot`` (per layer), ``pooled`` (per table, int8 at s_T),
        ``Z``, ``R`` (the top MLP's input), ``top`` (per layer; the last one is
        the int32 logit accumulator ``[B, 1]``)."""
        inputs.check(self.arch)
        a = self.quantize_inputs(inputs)
        out = {"dense": a, "bot": []}
        for layer in self.bot:
            a = layer.run(a)
            out["bot"].append(a)
        x = a
        pooled = []
        for t, tab in enumerate(self.tables):
            s = bag_sum(tab.eq.astype(np.int64), inputs.indices[t], inputs.offsets[t])
            pooled.append(golden.requantize(s, tab.multiplier, tab.shift))
        out["pooled"] = pooled
        tv = np.stack([x] + pooled, axis=1)                        # [B, n_vec, d]
        z = np.einsum("bid,bjd->bij", tv, tv)
        i, j = np.tril_indices(tv.shape[1], -1)
        # a rescale per pair: the per-channel post-processing, without bias
        out["Z"] = golden.postprocess(z[:, i, j], multiplier=self.z_multiplier,
                                      shift=self.z_shift)
        a = out["R"] = np.concatenate([x, out["Z"]], axis=1)
        out["top"] = []
        for layer in self.top:
            a = layer.run(a)
            out["top"].append(a)
        return out

    def logits_from_acc(self, acc) -> np.ndarray:
        """Float logits from the last layer's int32 accumulators ``[B]`` or ``[B, 1]``."""
        return np.asarray(acc, np.float64).reshape(-1) * float(self.top[-1].s_acc[0])

    def logits(self, inputs: Inputs) -> np.ndarray:
        return self.logits_from_acc(self.forward_int(inputs)["top"][-1])

    def predict(self, inputs: Inputs) -> np.ndarray:
        return sigmoid(self.logits(inputs))

    # -- float model with chosen stages quantized ---------------------------------------
    def stages(self) -> list[str]:
        """The quantization stages, in network order."""
        return (["dense"] + [layer.name for layer in self.bot] + ["emb", "interact"]
                + [layer.name for layer in self.top])

    def fake_quant_logits(self, model: DLRMFloat, inputs: Inputs, quantized=()) -> np.ndarray:
        """Logits of the float ``model`` where the stages in ``quantized`` (names
        of :meth:`stages`) use their quantized weights and quantize their output
        to int8 and back; every other stage stays float."""
        q = set(quantized)
        unknown = q - set(self.stages())
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; stages are {self.stages()}")

        def fq(v, s):
            return np.clip(_round(v / s), -128, 127) * s

        x = inputs.dense.astype(np.float64)
        if "dense" in q:
            x = quantize_dense(x, self.s_dense) * self.s_dense

        def linear(x, layer, w, b, last):
            if layer.name in q:
                w, b = layer.dequant_weight(), layer.dequant_bias()
            y = x @ np.asarray(w, np.float64).T + b
            if layer.relu:
                y = np.maximum(y, 0.0)
            if layer.name in q and not last:
                y = fq(y, layer.s_out)
            return y

        for layer, (w, b) in zip(self.bot, model.bot):
            x = linear(x, layer, w, b, False)
        pooled = []
        for t, (tab, e) in enumerate(zip(self.tables, model.emb)):
            if "emb" in q:
                p = bag_sum(tab.eq.astype(np.float64) * tab.scale, inputs.indices[t],
                            inputs.offsets[t])
                pooled.append(fq(p, self.s_T[1 + t]))
            else:
                pooled.append(bag_sum(e.astype(np.float64), inputs.indices[t], inputs.offsets[t]))
        r = interact(x, pooled)
        if "interact" in q:
            d = x.shape[1]
            r = np.concatenate([r[:, :d], fq(r[:, d:], self.s_Z)], axis=1)
        for n, (layer, (w, b)) in enumerate(zip(self.top, model.top)):
            r = linear(r, layer, w, b, n == len(self.top) - 1)
        return r[:, 0]

    # -- printing -----------------------------------------------------------------------
    def describe(self) -> str:
        lines = [f"quantization: weights int8 per channel (max), activations int8 per tensor "
                 f"({self.method}{f' {self.percentile}' if self.method == 'percentile' else ''}), "
                 f"tables int8 per table (max)",
                 f"  dense input scale {self.s_dense:.4g}; x {self.s_T[0]:.4g}; pooled vectors "
                 f"{scale_span(self.s_T[1:])} (one per table); interaction outputs "
                 f"{scale_span(self.s_Z)} (one per pair)"]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# -- quantization ----------------------------------------------------------------------

def scale_span(v) -> str:
    """``min..max`` of the scales ``v``, for the layer table."""
    v = np.asarray(v, np.float64)
    return f"{v.min():.4g}..{v.max():.4g}"


def _stat(a, method, percentile):
    a = np.abs(np.asarray(a, np.float64)).reshape(-1)
    if a.size == 0:
        return 0.0
    return float(a.max() if method == "max" else np.percentile(a, percentile))


def _act_scale(stat):
    return max(stat, 1e-8) / _Q


def _quant_linear(name, w, b, s_in, relu, s_out, notes):
    """A QLayer for float ``w`` ``[out, in]``, ``b``, input column scales ``s_in``."""
    w = np.asarray(w, np.float64)
    b = np.asarray(b, np.float64)
    wf = w * s_in[None, :]
    s_acc = np.abs(wf).max(axis=1) / _Q
    s_acc = np.where(s_acc > 0, s_acc, 1.0)         # an all-zero channel: any scale
    wq = np.clip(_round(wf / s_acc[:, None]), -_Q, _Q).astype(np.int8)
    bias = _round(b / s_acc)
    if np.abs(bias).max(initial=0) >= 2 ** 31:
        j = int(np.argmax(np.abs(bias)))
        raise ModelError(f"{name}: channel {j}'s bias {b[j]:.4g} is {abs(bias[j]):.3g} times the "
                         f"accumulator's step: it does not fit int32")
    layer = QLayer(name=name, wq=wq, bias=bias.astype(np.int64), s_acc=s_acc,
                   s_in=np.asarray(s_in, np.float64), relu=relu)
    if s_out is not None:
        need = float(s_acc.max()) * _MARGIN
        if s_out < need:
            notes.append(f"{name}: output scale raised from {s_out:.4g} to {need:.4g} so that "
                         f"every channel's factor stays below 1")
            s_out = need
        layer.s_out = s_out
        mq = [quantize_multiplier(s / s_out) for s in s_acc]
        layer.multiplier = np.array([m for m, _ in mq], np.int64)
        layer.shift = np.array([s for _, s in mq], np.int64)
    return layer


def quantize(model: DLRMFloat, calib: Inputs, *, method: str = "percentile",
             percentile: float = 99.99) -> QuantDLRM:
    """Post-training quantization of ``model`` with activation scales from ``calib``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if not 50.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in range 50..100, not {percentile!r}")
    if calib.batch < 1:
        raise ModelError("the calibration data has no samples")
    arch = model.arch
    _, parts = model.forward(calib, parts=True)
    notes = []

    def scale(a):
        return _act_scale(_stat(a, method, percentile))

    s_dense = scale(calib.dense)
    bot, s_prev = [], np.full(arch.n_dense, s_dense)
    for n, (w, b) in enumerate(model.bot):
        layer = _quant_linear(f"bot_l.{2 * n}", w, b, s_prev, True, scale(parts["bot"][n]),
                              notes)
        bot.append(layer)
        s_prev = np.full(layer.n, layer.s_out)

    # each table's pooled scale: at least the table's own (the pooled
    # requantization shifts right)
    tables, s_T = [], [bot[-1].s_out]
    for t, e in enumerate(model.emb):
        st = max(float(np.abs(e).max()), 1e-8) / _Q
        sp = scale(parts["emb"][t])
        if sp < st * _MARGIN:
            notes.append(f"emb_l.{t}: pooled scale raised from {sp:.4g} to {st * _MARGIN:.4g} "
                         f"(the table's own scale)")
            sp = st * _MARGIN
        eq = np.clip(_round(np.asarray(e, np.float64) / st), -_Q, _Q).astype(np.int8)
        m, sh = quantize_multiplier(st / sp)
        tables.append(QTable(eq=eq, scale=st, multiplier=m, shift=sh))
        s_T.append(sp)
    s_T = np.array(s_T)

    # a scale per pair (i, j), at least s_T[i] * s_T[j] (its rescale shifts right)
    d = arch.dim
    zc = np.asarray(parts["interact"][:, d:], np.float64)
    i, j = np.tril_indices(arch.n_vec, -1)
    s_in = s_T[i] * s_T[j]
    s_Z = np.array([scale(zc[:, p]) for p in range(arch.n_pairs)])
    raised = s_Z < s_in * _MARGIN
    if raised.any():
        notes.append(f"{int(raised.sum())} of {arch.n_pairs} interaction output scales raised to "
                     f"their vectors' product (calibration dot products that small)")
    s_Z = np.where(raised, s_in * _MARGIN, s_Z)
    zq = [quantize_multiplier(r) for r in s_in / s_Z]
    zm = np.array([m for m, _ in zq], np.int64)
    zs = np.array([sh for _, sh in zq], np.int64)

    top, s_prev = [], np.concatenate([np.full(d, s_T[0]), s_Z])
    for n, (w, b) in enumerate(model.top):
        last = n == len(model.top) - 1
        s_out = None if last else scale(parts["top"][n])
        layer = _quant_linear(f"top_l.{2 * n}", w, b, s_prev, not last, s_out, notes)
        top.append(layer)
        if not last:
            s_prev = np.full(layer.n, layer.s_out)
    return QuantDLRM(arch=arch, s_dense=s_dense, bot=bot, top=top, tables=tables, s_T=s_T,
                     s_Z=s_Z, z_multiplier=zm, z_shift=zs, method=method, percentile=percentile,
                     notes=notes)
