"""Synthetic click-through data for a DLRM, without any download.

A random *teacher* DLRM (:func:`init_dlrm`, the reference implementation's
own initialisation) labels samples drawn from a Criteo-like population
(:func:`synthetic_ctr`): dense features that look like Criteo's counts after
``log(1 + x)``, multi-hot bags whose rows follow a Zipf-like popularity, and
clicks drawn from the teacher's calibrated click probability. A model trained
on such data (:mod:`.dlrm_train`) has a known ceiling: the teacher's own AUC.

Architectures: :data:`SMALL_ARCH` (fits a small chip memory) and
:func:`kaggle_arch` (DLRM's Criteo Kaggle configuration, tables capped like
DLRM's ``--max-ind-range``).
"""

from __future__ import annotations

import numpy as np

from .dlrm import DLRMArch, DLRMFloat, Inputs, sigmoid

__all__ = ["SMALL_ARCH", "KAGGLE_TABLE_ROWS", "kaggle_arch", "init_dlrm", "synthetic_ctr",
           "teacher_probs", "Population"]

# 4 dense features, 4 tables of dimension 8, 5 interacting vectors -> 10 pairs:
# top MLP input 8 + 10 = 18. 488 table rows x 8 bytes at int8: a few KiB of chip memory.
SMALL_ARCH = DLRMArch(bot=(4, 16, 8), top=(18, 16, 1), table_rows=(64, 100, 128, 196))

# Rows of the 26 categorical features of the Criteo Kaggle Display Advertising
# Challenge data set as DLRM's preprocessing (data_utils.py, kaggleAdDisplayChallenge_
# processed.npz, `counts`; the `ln_emb` dlrm_s_pytorch.py builds the tables from) gives
# them. Taken from real-zhangzhe/wukong exp/train_wukong_on_criteo_kaggle_dataset.py
# ("Criteo dataset specific, from dataset.npz"); the same 26 numbers appear as `ln_emb`
# in TorchRec DLRM training scripts and as `num_embed_separate` in Hetu's Criteo
# dataset class. Their sum is 33,762,577.
KAGGLE_TABLE_ROWS = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)


def kaggle_arch(cap: int | None = None) -> DLRMArch:
    """DLRM's Criteo Kaggle model (``--arch-sparse-feature-size=16
    --arch-mlp-bot=13-512-256-64-16 --arch-mlp-top=512-256-1``), each table's rows
    capped at ``cap`` like ``--max-ind-range`` (indices taken modulo ``cap``)."""
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, np.integer))
                            or cap < 1):
        raise ValueError(f"cap must be a positive integer or None, not {cap!r}")
    rows = KAGGLE_TABLE_ROWS if cap is None else tuple(min(r, int(cap)) for r in KAGGLE_TABLE_ROWS)
    return DLRMArch(bot=(13, 512, 256, 64, 16), top=(367, 512, 256, 1), table_rows=rows)


def _check_seed(seed, name="seed"):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, not {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {seed!r}")
    return int(seed)


def init_dlrm(arch: DLRMArch, seed) -> DLRMFloat:
    """A DLRM with the reference implementation's initialisation
    (``dlrm_s_pytorch.py``): ``create_emb`` draws each table uniform in
    ``±sqrt(1/rows)``; ``create_mlp`` draws ``W ~ N(0, sqrt(2/(in+out)))`` and
    ``b ~ N(0, sqrt(1/out))``. Same draw order (tables, bottom, top); float32."""
    if not isinstance(arch, DLRMArch):
        raise TypeError(f"arch must be a DLRMArch, not {arch!r}")
    rng = np.random.default_rng(_check_seed(seed))
    emb = [rng.uniform(-np.sqrt(1 / n), np.sqrt(1 / n), size=(n, arch.dim)).astype(np.float32)
           for n in arch.table_rows]

    def mlp(widths):
        layers = []
        for n, m in zip(widths, widths[1:]):
            w = rng.normal(0.0, np.sqrt(2 / (m + n)), size=(m, n)).astype(np.float32)
            b = rng.normal(0.0, np.sqrt(1 / m), size=m).astype(np.float32)
            layers.append((w, b))
        return layers

    bot = mlp(arch.bot)
    return DLRMFloat(bot=bot, top=mlp(arch.top), emb=emb)


class Population:
    """The distribution samples are drawn from, fixed by ``arch`` and ``seed``.

    Per dense feature: a share of zeros (Criteo's many zero/missing counts) and
    a lognormal count otherwise, the feature being ``log1p(floor(count))``. Per
    table: a Zipf-like popularity over a random order of its rows (rank ``k``
    drawn with probability about ``1/(k+1)^s``, ``s`` per table in 0.9..1.3:
    a few hot rows and a long tail)."""

    def __init__(self, arch: DLRMArch, seed: int):
        rng = np.random.default_rng([_check_seed(seed, "population_seed"), 0x5EED])
        self.arch = arch
        self.zero_share = rng.uniform(0.05, 0.4, arch.n_dense)
        self.log_mean = rng.uniform(0.0, 4.0, arch.n_dense)
        self.log_sigma = rng.uniform(0.5, 1.5, arch.n_dense)
        self.zipf_s = rng.uniform(0.9, 1.3, arch.n_tables)
        self.row_of_rank = [rng.permutation(r) for r in arch.table_rows]

    def dense(self, rng, n):
        counts = np.floor(rng.lognormal(self.log_mean, self.log_sigma, (n, self.arch.n_dense)))
        counts[rng.random((n, self.arch.n_dense)) < self.zero_share] = 0.0
        return np.log1p(counts).astype(np.float32)

    def rows(self, rng, t, n):
        """``n`` rows of table ``t``: the rank is the inverse CDF of a continuous
        power law ``x^-s`` on ``[1, rows + 1)``, floored (no table-sized array)."""
        rows, s = self.arch.table_rows[t], self.zipf_s[t]
        u = rng.random(n)
        hi = rows + 1.0
        if abs(s - 1.0) < 1e-9:
            x = hi ** u
        else:
            x = (1.0 + u * (hi ** (1.0 - s) - 1.0)) ** (1.0 / (1.0 - s))
        rank = np.minimum(np.floor(x).astype(np.int64) - 1, rows - 1)
        return self.row_of_rank[t][rank]

    def inputs(self, rng, n, bag_len):
        lo, hi = bag_len
        indices, offsets = [], []
        for t in range(self.arch.n_tables):
            lengths = rng.integers(lo, hi + 1, n)
            offsets.append(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
            indices.append(self.rows(rng, t, int(lengths.sum())))
        return Inputs(self.dense(rng, n), indices, offsets)


def _calibration(teacher, pop, bag_len, ctr, sharpness):
    """(mean, std, shift) of the teacher's logits on a fixed sample of the
    population: ``sharpness * (s - mean) / std + shift`` has mean click rate ``ctr``."""
    sample = pop.inputs(np.random.default_rng([0xCA11, 0]), 8192, bag_len)
    s = teacher.forward(sample)
    mean, std = float(s.mean()), float(s.std())
    z = sharpness * (s - mean) / (std if std > 0 else 1.0)
    lo, hi = -50.0, 50.0
    for _ in range(100):                      # mean sigmoid(z + c) rises with c
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sigmoid(z + mid).mean() < ctr else (lo, mid)
    return mean, std if std > 0 else 1.0, 0.5 * (lo + hi)


def synthetic_ctr(teacher: DLRMFloat, n_samples, *, seed, bag_len=(1, 4), ctr=0.25,
                  sharpness=2.0, population_seed=0):
    """``(Inputs, labels float32 [n])``: ``n_samples`` i.i.d. samples and clicks.

    The population (feature distributions, :class:`Population`) and the click
    function depend only on ``teacher``, ``population_seed``, ``bag_len``, ``ctr``
    and ``sharpness``; ``seed`` draws the samples, so calls with different seeds
    give a training and a held-out set of the same task. The click probability is
    ``sigmoid(sharpness * standardized teacher logit + shift)``, standardized and
    shifted on a fixed calibration sample so that the mean click rate is ``ctr``.
    Bag lengths are uniform in ``bag_len`` (inclusive)."""
    if not isinstance(teacher, DLRMFloat):
        raise TypeError(f"teacher must be a DLRMFloat, not {teacher!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
            or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, not {n_samples!r}")
    seed = _check_seed(seed)
    bag_len = tuple(bag_len)
    if len(bag_len) != 2 or not all(isinstance(b, (int, np.integer)) for b in bag_len) \
            or not 0 <= bag_len[0] <= bag_len[1]:
        raise ValueError(f"bag_len must be (min, max) with 0 <= min <= max, not {bag_len!r}")
    if not 0.0 < ctr < 1.0:
        raise ValueError(f"ctr must be in (0, 1), not {ctr!r}")
    if not sharpness > 0:
        raise ValueError(f"sharpness must be positive, not {sharpness!r}")
    pop = Population(teacher.arch, population_seed)
    mean, std, shift = _calibration(teacher, pop, bag_len, ctr, sharpness)
    rng = np.random.default_rng([seed, 1])
    inputs = pop.inputs(rng, int(n_samples), bag_len)
    p = sigmoid(sharpness * (teacher.forward(inputs) - mean) / std + shift)
    labels = (rng.random(p.shape) < p).astype(np.float32)
    return inputs, labels


def teacher_probs(teacher: DLRMFloat, inputs: Inputs, *, bag_len=(1, 4), ctr=0.25,
                  sharpness=2.0, population_seed=0) -> np.ndarray:
    """The true click probabilities :func:`synthetic_ctr` drew ``inputs``' labels
    from (same keyword arguments): the best any model can predict."""
    if not isinstance(teacher, DLRMFloat):
        raise TypeError(f"teacher must be a DLRMFloat, not {teacher!r}")
    pop = Population(teacher.arch, population_seed)
    mean, std, shift = _calibration(teacher, pop, tuple(bag_len), ctr, sharpness)
    return sigmoid(sharpness * (teacher.forward(inputs) - mean) / std + shift)

