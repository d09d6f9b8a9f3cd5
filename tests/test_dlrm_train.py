"""Synthetic click data, NumPy DLRM training and the metrics (firmware/dlrm_data.py,
firmware/dlrm_train.py)."""

import math

import numpy as np
import pytest

from seedchip.firmware.dlrm import DLRMArch, DLRMFloat, Inputs, interaction_pairs
from seedchip.firmware.dlrm_train import (KAGGLE_TABLE_ROWS, SMALL_ARCH, auc, init_dlrm,
                                          kaggle_arch, log_loss, loss_and_grads,
                                          synthetic_ctr, teacher_probs, train)

TINY = DLRMArch(bot=(3, 5, 2), top=(5, 4, 1), table_rows=(5, 7))   # 3 vectors, 3 pairs


def _float64(model, emb_scale=1.0):
    return DLRMFloat(bot=[(w.astype(np.float64), b.astype(np.float64)) for w, b in model.bot],
                     top=[(w.astype(np.float64), b.astype(np.float64)) for w, b in model.top],
                     emb=[e.astype(np.float64) * emb_scale for e in model.emb])


def _tiny_batch(seed):
    rng = np.random.default_rng(seed)
    B = 6
    dense = rng.uniform(0, 2, (B, 3))
    indices, offsets = [], []
    for rows in TINY.table_rows:
        lengths = rng.integers(0, 4, B)           # empty bags included
        lengths[0] = 3
        idx = rng.integers(0, rows, lengths.sum())
        idx[:2] = idx[2]                            # one row repeated inside a bag
        indices.append(idx)
        offsets.append(np.concatenate([[0], np.cumsum(lengths)[:-1]]))
    return Inputs(dense, indices, offsets), rng.integers(0, 2, B).astype(np.float64)


def _bce(model, inputs, labels):
    s = model.forward(inputs)
    return float(np.mean(np.logaddexp(0, s) - labels * s))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backprop_matches_finite_differences(seed):
    # float64 copy; tables scaled up so the dot interaction's gradients matter
    model = _float64(init_dlrm(TINY, seed), emb_scale=4.0)
    inputs, labels = _tiny_batch(seed)
    loss, grads = loss_and_grads(model, inputs, labels)
    assert loss == pytest.approx(_bce(model, inputs, labels), rel=1e-12)
    sd = model.state_dict()
    assert sorted(grads) == sorted(sd)
    h = 1e-6
    for key, param in sd.items():
        assert grads[key].dtype == np.float64 and grads[key].shape == param.shape
        numeric = np.zeros_like(param)
        for i in np.ndindex(param.shape):
            keep = param[i]
            param[i] = keep + h
            up = _bce(model, inputs, labels)
            param[i] = keep - h
            down = _bce(model, inputs, labels)
            param[i] = keep
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-5, atol=1e-8,
                                   err_msg=f"{key} (seed {seed})")
    # the check is not vacuous: every part of the model gets a gradient
    for key in ("emb_l.0.weight", "emb_l.1.weight", "bot_l.0.weight", "top_l.0.weight"):
        assert np.abs(grads[key]).max() > 1e-4, key


def _loop_forward(model, inputs):
    """The DLRM forward pass one sample at a time, written from the definition."""
    out = []
    for b in range(inputs.batch):
        x = [float(v) for v in inputs.dense[b]]
        for w, bias in model.bot:
            x = [max(0.0, sum(float(w[o, i]) * x[i] for i in range(len(x))) + float(bias[o]))
                 for o in range(w.shape[0])]
        vecs = [x]
        for t, table in enumerate(model.emb):
            ends = list(inputs.offsets[t]) + [inputs.indices[t].size]
            pooled = [0.0] * table.shape[1]
            for k in range(ends[b], ends[b + 1]):
                row = table[inputs.indices[t][k]]
                pooled = [p + float(r) for p, r in zip(pooled, row)]
            vecs.append(pooled)
        feats = list(x)
        for i in range(1, len(vecs)):              # DLRM order: (1,0), (2,0), (2,1), ...
            for j in range(i):
                feats.append(sum(p * q for p, q in zip(vecs[i], vecs[j])))
        y = feats
        for n, (w, bias) in enumerate(model.top):
            y = [sum(float(w[o, i]) * y[i] for i in range(len(y))) + float(bias[o])
                 for o in range(w.shape[0])]
            if n < len(model.top) - 1:
                y = [max(0.0, v) for v in y]
        out.append(y[0])
    return np.array(out)


def test_forward_matches_a_per_sample_loop():
    teacher = init_dlrm(SMALL_ARCH, 7)
    inputs, _ = synthetic_ctr(teacher, 5, seed=3)
    np.testing.assert_allclose(teacher.forward(inputs), _loop_forward(teacher, inputs),
                               rtol=1e-9, atol=1e-12)
    model = _float64(init_dlrm(TINY, 4), emb_scale=4.0)
    tiny, _ = _tiny_batch(4)
    np.testing.assert_allclose(model.forward(tiny), _loop_forward(model, tiny),
                               rtol=1e-9, atol=1e-12)
    assert len(interaction_pairs(SMALL_ARCH.n_vec)) + SMALL_ARCH.dim == SMALL_ARCH.top[0]


def test_training_approaches_the_teacher():
    teacher = init_dlrm(SMALL_ARCH, 0)
    x, y = synthetic_ctr(teacher, 20000, seed=1)
    xt, yt = synthetic_ctr(teacher, 10000, seed=2)
    teacher_auc = auc(yt, teacher_probs(teacher, xt))
    losses = []
    model = train(init_dlrm(SMALL_ARCH, 100), x, y, epochs=3, seed=3,
                  log=lambda epoch, loss: losses.append((epoch, loss)))
    assert [e for e, _ in losses] == [1, 2, 3]
    assert losses[0][1] > losses[1][1] > losses[2][1]
    assert all(a.dtype == np.float32 for a in model.state_dict().values())
    probs = model.predict(xt)
    base = log_loss(yt, np.full(yt.shape, y.mean()))
    student_auc = auc(yt, probs)
    print(f"teacher AUC {teacher_auc:.4f}, trained AUC {student_auc:.4f}, "
          f"log loss {log_loss(yt, probs):.4f} (constant {base:.4f})")
    assert 0.8 < teacher_auc < 0.92
    assert teacher_auc - 0.05 < student_auc <= teacher_auc + 0.01
    assert log_loss(yt, probs) < base - 0.1
    # the sparse features carry part of the signal: the tables were trained
    start = init_dlrm(SMALL_ARCH, 100)
    assert all(not np.array_equal(a, b) for a, b in zip(model.emb, start.emb))


def test_auc_hand_worked_cases():
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auc([1, 1, 0, 0], [0.1, 0.4, 0.35, 0.8]) == 0.25
    assert auc([0, 1], [0.5, 0.5]) == 0.5                         # a tie counts one half
    assert auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == 3.5 / 4
    assert auc([0, 1, 0, 1, 1], [3, 3, 3, 3, 3]) == 0.5
    assert auc(np.array([True, False]), [2.0, 1.0]) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="both classes"):
        auc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="2 entries but there are 3"):
        auc([0, 1], [0.1, 0.2, 0.3])


def test_auc_equals_pairwise_count_with_ties():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 10, 300).astype(float)                  # many ties
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc(y, s) == pytest.approx(wins / (pos.size * neg.size), abs=1e-12)


def test_log_loss_hand_worked_cases():
    assert log_loss([1, 0], [0.8, 0.3]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert log_loss([1, 1, 0, 0], [0.5] * 4) == pytest.approx(math.log(2))
    # clipped: a confident miss costs -log(eps), not infinity
    assert log_loss([1, 0], [0.0, 0.0]) == pytest.approx(-math.log(1e-7) / 2)
    assert log_loss([0], [1.0], eps=1e-3) == pytest.approx(-math.log(1e-3))
    with pytest.raises(ValueError, match="0 or 1"):
        log_loss([0.5], [0.5])


def test_seeded_determinism():
    a, b = init_dlrm(SMALL_ARCH, 5), init_dlrm(SMALL_ARCH, 5)
    assert all(np.array_equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not np.array_equal(a.emb[0], init_dlrm(SMALL_ARCH, 6).emb[0])
    (x1, y1), (x2, y2) = (synthetic_ctr(a, 500, seed=9) for _ in range(2))
    assert np.array_equal(y1, y2) and np.array_equal(x1.dense, x2.dense)
    assert all(np.array_equal(i, j) for i, j in zip(x1.indices, x2.indices))
    x3, y3 = synthetic_ctr(a, 500, seed=10)
    assert not np.array_equal(x1.dense, x3.dense)
    start = init_dlrm(SMALL_ARCH, 1)
    m1 = train(start, x1, y1, epochs=2, batch=64, seed=4)
    assert np.array_equal(start.emb[0], init_dlrm(SMALL_ARCH, 1).emb[0])   # a new model
    m2 = train(init_dlrm(SMALL_ARCH, 1), x1, y1, epochs=2, batch=64, seed=4)
    m3 = train(init_dlrm(SMALL_ARCH, 1), x1, y1, epochs=2, batch=64, seed=5)
    assert all(np.array_equal(m1.state_dict()[k], m2.state_dict()[k]) for k in m1.state_dict())
    assert not np.array_equal(m1.top[0][0], m3.top[0][0])


def test_init_follows_dlrm():
    arch = DLRMArch(bot=(64, 256, 32), top=(32 + 6, 128, 1), table_rows=(400, 50, 3))
    m = init_dlrm(arch, 0)
    for e, rows in zip(m.emb, arch.table_rows):
        assert e.dtype == np.float32 and e.shape == (rows, 32)
        assert np.abs(e).max() <= math.sqrt(1 / rows)
    w, b = m.bot[0]
    assert w.dtype == np.float32 and w.shape == (256, 64)
    assert w.std() == pytest.approx(math.sqrt(2 / (64 + 256)), rel=0.05)
    assert b.std() == pytest.approx(math.sqrt(1 / 256), rel=0.2)


def test_synthetic_data_is_valid_and_criteo_like():
    teacher = init_dlrm(SMALL_ARCH, 0)
    inputs, labels = synthetic_ctr(teacher, 4000, seed=1, bag_len=(1, 4), ctr=0.25)
    assert isinstance(inputs, Inputs) and inputs.batch == 4000
    inputs.check(SMALL_ARCH)
    Inputs(inputs.dense, inputs.indices, inputs.offsets)          # constructs again
    assert labels.dtype == np.float32 and labels.shape == (4000,)
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert abs(labels.mean() - 0.25) < 0.03
    assert inputs.dense.dtype == np.float32 and inputs.dense.min() >= 0
    assert (inputs.dense == 0).mean() > 0.05                      # zero counts
    counts = np.expm1(inputs.dense.astype(np.float64))            # log1p of counts
    np.testing.assert_allclose(counts, np.round(counts), rtol=1e-5, atol=1e-5)
    assert counts.max() > 20 * np.median(counts)                  # heavy tail
    for t, rows in enumerate(SMALL_ARCH.table_rows):
        lengths = inputs.bag_lengths(t)
        assert lengths.min() == 1 and lengths.max() == 4
        idx = inputs.indices[t]
        assert idx.dtype == np.int64 and 0 <= idx.min() and idx.max() < rows
        counts = np.sort(np.bincount(idx, minlength=rows))[::-1]
        assert counts[: rows // 10].sum() > 0.4 * idx.size       # a few hot rows...
        assert (counts > 0).sum() > rows // 2                     # ...and a long tail
    # bag length 0 (empty bags) and other click rates
    empty, y = synthetic_ctr(teacher, 1000, seed=2, bag_len=(0, 2), ctr=0.05)
    assert empty.bag_lengths(0).min() == 0 and abs(y.mean() - 0.05) < 0.02


def test_architectures():
    assert SMALL_ARCH.n_dense == 4 and SMALL_ARCH.dim == 8 and SMALL_ARCH.n_tables == 4
    assert SMALL_ARCH.top == (18, 16, 1) and all(64 <= r <= 200 for r in SMALL_ARCH.table_rows)
    k = kaggle_arch()
    assert len(KAGGLE_TABLE_ROWS) == 26 and sum(KAGGLE_TABLE_ROWS) == 33762577
    assert KAGGLE_TABLE_ROWS[:4] == (1460, 583, 10131227, 2202608)
    assert k.bot == (13, 512, 256, 64, 16) and k.top == (367, 512, 256, 1)
    assert k.table_rows == KAGGLE_TABLE_ROWS
    capped = kaggle_arch(cap=10000)
    assert max(capped.table_rows) == 10000 and capped.table_rows[0] == 1460
    assert capped.table_rows[8] == 3
    with pytest.raises(ValueError, match="cap must be a positive integer or None, not 0"):
        kaggle_arch(cap=0)


def test_argument_checks():
    teacher = init_dlrm(SMALL_ARCH, 0)
    x, y = synthetic_ctr(teacher, 64, seed=1)
    with pytest.raises(ValueError, match="epochs must be a positive integer, not 0"):
        train(teacher, x, y, epochs=0, seed=0)
    with pytest.raises(ValueError, match="labels has 3 entries, but there are 64 samples"):
        train(teacher, x, y[:3], epochs=1, seed=0)
    with pytest.raises(ValueError, match="bag_len must be"):
        synthetic_ctr(teacher, 10, seed=0, bag_len=(3, 1))
    with pytest.raises(ValueError, match="ctr must be in"):
        synthetic_ctr(teacher, 10, seed=0, ctr=1.0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, not -1"):
        init_dlrm(SMALL_ARCH, -1)
    with pytest.raises(TypeError, match="seed must be a non-negative integer, not 1.5"):
        train(teacher, x, y, epochs=1, seed=1.5)
