"""Training a float DLRM in NumPy, and the accuracy metrics.

:func:`train` minimises the binary cross-entropy of the click logits with
mini-batch Adam and backpropagation written by hand through every part of
:class:`~.dlrm.DLRMFloat`: the top MLP, the dot interaction (``Z`` the strict
lower triangle of ``T T^T``: the gradient reaches ``x`` and every pooled
vector), the EmbeddingBag sums (sparse row gradients) and the bottom MLP.
Tables get lazy Adam (like ``torch.optim.SparseAdam``: only the rows a batch
touches move), the MLPs dense Adam. No PyTorch.

:func:`loss_and_grads` exposes one step's loss and gradients (keys of the
``state_dict``) for checks; arithmetic is in the parameters' dtype, so a
float64 copy of a model gives float64 gradients.

:func:`auc` (rank-based ROC AUC) and :func:`log_loss` measure predictions.
The data and architectures live in :mod:`.dlrm_data` and are re-exported here.
"""

from __future__ import annotations

import numpy as np

from .dlrm import DLRMFloat, Inputs, ModelError
from .dlrm_data import (KAGGLE_TABLE_ROWS, SMALL_ARCH, Population, _check_seed, init_dlrm,
                        kaggle_arch, synthetic_ctr, teacher_probs)

__all__ = ["train", "loss_and_grads", "auc", "log_loss",
           "SMALL_ARCH", "KAGGLE_TABLE_ROWS", "kaggle_arch", "init_dlrm", "synthetic_ctr",
           "teacher_probs", "Population"]


# -- forward and backward on one batch ------------------------------------------------

class _Bags:
    """One table's bags of a batch: ``idx`` the rows, ``bag`` the sample of each."""
    __slots__ = ("idx", "bag")

    def __init__(self, idx, bag):
        self.idx, self.bag = idx, bag


def _bags_of(inputs: Inputs):
    return [_Bags(inputs.indices[t], np.repeat(np.arange(inputs.batch), inputs.bag_lengths(t)))
            for t in range(len(inputs.indices))]


def _pool(table, bags: _Bags, batch):
    out = np.zeros((batch, table.shape[1]), table.dtype)
    np.add.at(out, bags.bag, table[bags.idx])
    return out


def _step(params, dense, bags, labels):
    """Mean BCE-with-logits loss and gradients of one batch.

    ``params`` = (bot [(W, b)], top [(W, b)], emb [tables]); returns
    ``(loss, (dbot, dtop, demb))`` where ``demb[t]`` is ``(rows, grad_rows)``:
    the distinct rows the batch touched and their summed gradients."""
    bot, top, emb = params
    dt = emb[0].dtype
    B = dense.shape[0]
    # forward, keeping each layer's input and the ReLU masks
    a, bot_in = dense.astype(dt, copy=False), []
    for w, b in bot:
        bot_in.append(a)
        a = np.maximum(a @ w.T + b, 0)
    x = a
    T = np.stack([x] + [_pool(e, bg, B) for e, bg in zip(emb, bags)], axis=1)  # [B, n, d]
    n_vec = T.shape[1]
    li, lj = np.tril_indices(n_vec, -1)
    Z = np.matmul(T, T.transpose(0, 2, 1))
    y, top_in = np.concatenate([x, Z[:, li, lj]], axis=1), []
    for k, (w, b) in enumerate(top):
        top_in.append(y)
        y = y @ w.T + b
        if k < len(top) - 1:
            y = np.maximum(y, 0)
    s = y[:, 0]
    # loss = mean(softplus(s) - label * s), stable for any s
    loss = float(np.mean(np.maximum(s, 0) - labels * s + np.log1p(np.exp(-np.abs(s)))))
    p = 0.5 * (1 + np.tanh(0.5 * s))
    g = ((p - labels) / B).astype(dt)[:, None]                      # dL/ds

    dtop = []
    for k in range(len(top) - 1, -1, -1):
        w, _ = top[k]
        dtop.append((g.T @ top_in[k], g.sum(0)))
        g = g @ w
        if k > 0:
            g = g * (top_in[k] > 0)                                 # ReLU of layer k-1
    dtop.reverse()
    # dot interaction: Z_ij = T_i . T_j, so dT_k = sum_j G_kj T_j + sum_i G_ik T_i
    d = x.shape[1]
    G = np.zeros((B, n_vec, n_vec), dt)
    G[:, li, lj] = g[:, d:]
    dT = np.matmul(G + G.transpose(0, 2, 1), T)
    gx = g[:, :d] + dT[:, 0]
    demb = []
    for t, bg in enumerate(bags):                                   # EmbeddingBag(sum)
        rows, inv = np.unique(bg.idx, return_inverse=True)
        grows = np.zeros((rows.size, d), dt)
        np.add.at(grows, inv, dT[bg.bag, t + 1])
        demb.append((rows, grows))
    dbot, g = [], gx * (x > 0)
    for k in range(len(bot) - 1, -1, -1):
        w, _ = bot[k]
        dbot.append((g.T @ bot_in[k], g.sum(0)))
        if k > 0:
            g = (g @ w) * (bot_in[k] > 0)
    dbot.reverse()
    return loss, (dbot, dtop, demb)


def _params(model):
    return ([(w, b) for w, b in model.bot], [(w, b) for w, b in model.top], list(model.emb))


def loss_and_grads(model: DLRMFloat, inputs: Inputs, labels):
    """``(loss, grads)``: the mean binary cross-entropy of ``model``'s logits
    against ``labels`` and its gradient for every ``state_dict`` key (dense
    arrays; a table's rows no bag used get zeros). Computed in the dtype of the
    model's arrays."""
    inputs.check(model.arch)
    labels = _labels(labels, inputs.batch)
    dt = model.emb[0].dtype
    loss, (dbot, dtop, demb) = _step(_params(model), inputs.dense.astype(dt), _bags_of(inputs),
                                     labels.astype(dt))
    grads = {}
    for t, (rows, g) in enumerate(demb):
        full = np.zeros_like(model.emb[t])
        full[rows] = g
        grads[f"emb_l.{t}.weight"] = full
    for prefix, layers in (("bot_l", dbot), ("top_l", dtop)):
        for n, (dw, db) in enumerate(layers):
            grads[f"{prefix}.{2 * n}.weight"], grads[f"{prefix}.{2 * n}.bias"] = dw, db
    return loss, grads


def _labels(labels, n):
    labels = np.asarray(labels, np.float64).reshape(-1)
    if labels.size != n:
        raise ValueError(f"labels has {labels.size} entries, but there are {n} samples")
    if not np.all((labels >= 0) & (labels <= 1)):
        raise ValueError("labels must lie in [0, 1] (clicks are 0 or 1)")
    return labels


# -- training ---------------------------------------------------------------------------

class _Adam:
    """Adam on a list of arrays, in place; ``sparse`` updates only given rows
    (moments of untouched rows stay, like SparseAdam)."""

    def __init__(self, arrays, lr, betas=(0.9, 0.999), eps=1e-8):
        self.lr, (self.b1, self.b2), self.eps, self.t = lr, betas, eps, 0
        self.m = [np.zeros_like(a) for a in arrays]
        self.v = [np.zeros_like(a) for a in arrays]

    def tick(self):
        self.t += 1
        self.step_size = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)

    def dense(self, k, param, grad):
        m, v = self.m[k], self.v[k]
        m *= self.b1
        m += (1 - self.b1) * grad
        v *= self.b2
        v += (1 - self.b2) * grad * grad
        param -= (self.step_size * m / (np.sqrt(v) + self.eps)).astype(param.dtype)

    def sparse(self, k, param, rows, grad):
        m = self.b1 * self.m[k][rows] + (1 - self.b1) * grad
        v = self.b2 * self.v[k][rows] + (1 - self.b2) * grad * grad
        self.m[k][rows], self.v[k][rows] = m, v
        param[rows] -= (self.step_size * m / (np.sqrt(v) + self.eps)).astype(param.dtype)


class _Shuffled:
    """A data set's samples in one epoch's order, cut into contiguous batches."""

    def __init__(self, inputs: Inputs, labels, perm):
        self.dense, self.labels = inputs.dense[perm], labels[perm]
        self.idx, self.ends = [], []
        for t in range(len(inputs.indices)):
            lengths = inputs.bag_lengths(t)[perm]
            starts = inputs.offsets[t][perm]
            ends = np.concatenate([[0], np.cumsum(lengths)])
            # position j of bag b in the new order reads old position starts[b] + j
            src = np.repeat(starts - ends[:-1], lengths) + np.arange(ends[-1])
            self.idx.append(inputs.indices[t][src])
            self.ends.append(ends)

    def batch(self, lo, hi):
        bags = []
        for idx, ends in zip(self.idx, self.ends):
            lengths = np.diff(ends[lo:hi + 1])
            bags.append(_Bags(idx[ends[lo]:ends[hi]], np.repeat(np.arange(hi - lo), lengths)))
        return self.dense[lo:hi], bags, self.labels[lo:hi]


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def train(model: DLRMFloat, inputs: Inputs, labels, *, epochs, batch=128, lr=0.01, seed,
          log=None) -> DLRMFloat:
    """A copy of ``model`` trained on ``(inputs, labels)``: ``epochs`` passes in a
    seeded random order, mini-batches of ``batch`` samples (the last one of an
    epoch may be smaller), Adam with step ``lr``, float32. ``log(epoch, loss)``
    is called after each epoch (from 1) with the epoch's mean training loss."""
    if not isinstance(model, DLRMFloat):
        raise TypeError(f"model must be a DLRMFloat, not {model!r}")
    epochs, batch = _positive_int(epochs, "epochs"), _positive_int(batch, "batch")
    if not (isinstance(lr, (int, float, np.floating)) and lr > 0):
        raise ValueError(f"lr must be a positive number, not {lr!r}")
    seed = _check_seed(seed)
    inputs.check(model.arch)
    labels = _labels(labels, inputs.batch).astype(np.float32)
    if inputs.batch == 0:
        raise ModelError("no samples to train on")

    bot = [(w.astype(np.float32), b.astype(np.float32)) for w, b in model.bot]
    top = [(w.astype(np.float32), b.astype(np.float32)) for w, b in model.top]
    emb = [e.astype(np.float32) for e in model.emb]
    mlp = [a for w, b in bot + top for a in (w, b)]
    opt_mlp, opt_emb = _Adam(mlp, lr), _Adam(emb, lr)
    rng = np.random.default_rng([seed, 2])
    n = inputs.batch
    for epoch in range(1, epochs + 1):
        data, total = _Shuffled(inputs, labels, rng.permutation(n)), 0.0
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            loss, (dbot, dtop, demb) = _step((bot, top, emb), *data.batch(lo, hi))
            total += loss * (hi - lo)
            opt_mlp.tick()
            opt_emb.tick()
            grads = [g for dw, db in dbot + dtop for g in (dw, db)]
            for k, (p, g) in enumerate(zip(mlp, grads)):
                opt_mlp.dense(k, p, g)
            for k, (rows, g) in enumerate(demb):
                opt_emb.sparse(k, emb[k], rows, g)
        if log is not None:
            log(epoch, total / n)
    return DLRMFloat(bot=bot, top=top, emb=emb)


# -- metrics ----------------------------------------------------------------------------

def _binary(labels, n=None):
    labels = np.asarray(labels).reshape(-1)
    if n is not None and labels.size != n:
        raise ValueError(f"labels has {labels.size} entries but there are {n} predictions")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    return labels.astype(bool)


def auc(labels, scores) -> float:
    """ROC AUC: the probability that a random positive scores above a random
    negative, ties counting one half (Mann-Whitney U from average ranks).
    ValueError if ``labels`` hold only one class."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    pos = _binary(labels, scores.size)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; labels have {n_pos} positives and "
                         f"{n_neg} negatives")
    values, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts                  # 0-based rank of each value's first
    ranks = (first + (counts + 1) / 2.0)[inverse.reshape(-1)]  # 1-based average ranks
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def log_loss(labels, probs, eps=1e-7) -> float:
    """Mean binary cross-entropy of click probabilities ``probs`` (clipped to
    ``[eps, 1 - eps]``) against 0/1 ``labels``."""
    probs = np.asarray(probs, np.float64).reshape(-1)
    y = _binary(labels, probs.size)
    if probs.size == 0:
        raise ValueError("log_loss of no predictions")
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), not {eps!r}")
    p = np.clip(probs, eps, 1 - eps)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))
