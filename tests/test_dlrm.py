"""The DLRM path without RTL: model loading and refusals, post-training
quantization, the quantized golden model against an independent integer
reference, the compiler's program on the golden executor (bit-exact,
tiled, K split), the artifact, accuracy against the float model, the demo."""

import dataclasses
import sys

import numpy as np
import pytest

from seedchip import isa
from seedchip.config import CHIP_CONFIG
from seedchip.firmware.compiler import Compiled, compile_model
from seedchip.firmware.demo import run_demo
from seedchip.firmware.dlrm import DLRMArch, DLRMFloat, Inputs, ModelError, interaction_pairs
from seedchip.firmware.dlrm_train import (SMALL_ARCH, auc, init_dlrm, kaggle_arch, synthetic_ctr,
                                          train)
from seedchip.firmware.ops import GoldenDevice
from seedchip.firmware.quant import quantize, quantize_multiplier
from seedchip.firmware.runtime import ModelRunner, pack_batch, run_model

LIMITS = isa.Limits.from_config(CHIP_CONFIG)
MEM = 1 << 20


@pytest.fixture(scope="module")
def trained():
    """(float model, quantized model, held-out inputs, labels) of the small DLRM."""
    teacher = init_dlrm(SMALL_ARCH, seed=0)
    data, labels = synthetic_ctr(teacher, 14000, seed=1)
    tr, te = data.slice(0, 12000), data.slice(12000, 14000)
    model = train(init_dlrm(SMALL_ARCH, seed=2), tr, labels[:12000], epochs=3, seed=3)
    q = quantize(model, tr.slice(0, 2000))
    return model, q, te, labels[12000:]


# -- the model a user brings ---------------------------------------------------------------

def test_state_dict_roundtrip(tmp_path):
    m = init_dlrm(SMALL_ARCH, seed=4)
    m.save(tmp_path / "m.npz")
    back = DLRMFloat.load(tmp_path / "m.npz")
    assert back.arch == SMALL_ARCH
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    assert sorted(m.state_dict()) == sorted(
        [f"emb_l.{t}.weight" for t in range(4)] + [f"{p}.{i}.{w}" for p in ("bot_l", "top_l")
                                                   for i in (0, 2) for w in ("weight", "bias")])
    a = kaggle_arch(cap=1000)
    assert (a.n_dense, a.dim, a.n_tables, a.n_pairs, a.top[0]) == (13, 16, 26, 351, 367)
    assert interaction_pairs(4) == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]


def _broken(edit):
    sd = dict(init_dlrm(SMALL_ARCH, seed=5).state_dict())
    edit(sd)
    return sd


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.pop("bot_l.2.bias"), "bot_l.2 needs both .weight and .bias"),
    (lambda sd: sd.update({"bot_l.2.weight": np.zeros((8, 15), np.float32)}),
     "bot_l.2 takes 15 inputs but the layer before it gives 16"),
    (lambda sd: sd.update({"emb_l.1.weight": np.zeros((100, 4), np.float32)}),
     "emb_l.1 has dimension 4"),
    (lambda sd: sd.update({"top_l.0.weight": np.zeros((16, 17), np.float32)}),
     "only DLRM's dot interaction"),
    (lambda sd: sd.update({"top_l.2.weight": np.zeros((2, 16), np.float32),
                           "top_l.2.bias": np.zeros(2, np.float32)}), "one output"),
    (lambda sd: sd.update({"top_l.3.weight": np.zeros((1, 16), np.float32)}),
     "Linear layers sit at even"[:10]),
    (lambda sd: sd.update({"dense_arch.0.weight": np.zeros(1)}), "unexpected keys"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("emb_l")], "no emb_l.0.weight"),
])
def test_refused_models(edit, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(".", r"\.")
                       if "only" not in message else message):
        DLRMFloat.from_state_dict(_broken(edit))


def test_pt_needs_torch(tmp_path, monkeypatch):
    """Without PyTorch a .pt is refused with how to install it or save an .npz
    (absence simulated: None in sys.modules makes ``import torch`` fail);
    reading .pt files with PyTorch is tests/test_dlrm_torch.py."""
    monkeypatch.setitem(sys.modules, "torch", None)
    p = tmp_path / "m.pt"
    p.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match=r"needs PyTorch \(pip install 'seedchip\[torch\]'\)"
                       r".*np\.savez"):
        DLRMFloat.load(p)


def test_inputs_refused():
    arch = SMALL_ARCH
    good = synthetic_ctr(init_dlrm(arch, seed=0), 8, seed=0)[0]
    cases = [
        (lambda: Inputs(good.dense, good.indices, good.offsets[:3]), "4 indices_.* but 3"),
        (lambda: Inputs(good.dense, good.indices, [good.offsets[0][:5]] + good.offsets[1:]),
         "offsets_0 has 5 entries"),
        (lambda: Inputs(good.dense, good.indices, [good.offsets[0] + 1] + good.offsets[1:]),
         r"offsets_0\[0\] is 1"),
    ]
    for make, msg in cases:
        with pytest.raises(ModelError, match=msg):
            make()
    bad = Inputs(good.dense, [good.indices[0] + 64] + good.indices[1:], good.offsets)
    with pytest.raises(ModelError, match="outside table 0's rows 0..63"):
        bad.check(arch)
    with pytest.raises(ModelError, match="dense has 3 features; the model takes 4"):
        Inputs(good.dense[:, :3], good.indices, good.offsets).check(arch)


# -- quantization ------------------------------------------------------------------------------

def test_quantize_multiplier():
    rng = np.random.default_rng(0)
    for real in np.concatenate([rng.random(500), 2.0 ** -rng.uniform(0, 31, 500),
                                [0.5, 1 - 2 ** -40, 2 ** -31]]):
        m, s = quantize_multiplier(real)
        assert (1 << 30) <= m < (1 << 31) and 0 <= s <= 31
        assert abs(m * 2.0 ** (-31 - s) - real) <= real * 2.0 ** -30 + 2.0 ** -62
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0 ** -33) == (0, 0)
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"in \[0, 1\)"):
            quantize_multiplier(bad)


def _srdhm(a, b):
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = 1 << 30 if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    return v // (1 << 31) if v >= 0 else -((-v) // (1 << 31))       # truncating division


def _rdpot(x, e):
    mask = (1 << e) - 1
    rem, thr = x & mask, (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > thr else 0)


def _wrap32(v):
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def _requant(acc, m, s, relu=False):
    v = _rdpot(_srdhm(_wrap32(acc), int(m)), int(s))
    v = max(v, 0) if relu else v
    return min(127, max(-128, v))


def _reference_int(q, inputs, b):
    """Sample ``b`` through the quantized network, one Python integer at a time."""
    def linear(layer, a):
        out = []
        for j in range(layer.n):
            acc = sum(int(a[k]) * int(layer.wq[j, k]) for k in range(layer.k)) + int(layer.bias[j])
            out.append(_requant(acc, layer.multiplier[j], layer.shift[j], layer.relu)
                       if layer.requant else _wrap32(acc))
        return out

    a = list(q.quantize_inputs(inputs)[b])
    for layer in q.bot:
        a = linear(layer, a)
    vecs = [a]
    for t, tab in enumerate(q.tables):
        ends = list(inputs.offsets[t]) + [inputs.indices[t].size]
        rows = inputs.indices[t][ends[b]:ends[b + 1]]
        s = [sum(int(tab.eq[r, c]) for r in rows) for c in range(q.arch.dim)]
        vecs.append([_requant(v, tab.multiplier, tab.shift) for v in s])
    # a rescale per pair, in DLRM's pair order
    z = [_requant(sum(x * y for x, y in zip(vecs[i], vecs[j])), q.z_multiplier[p], q.z_shift[p])
         for p, (i, j) in enumerate(interaction_pairs(len(vecs)))]
    a = vecs[0] + z
    for layer in q.top:
        a = linear(layer, a)
    return a[0]


def test_golden_against_integer_reference(trained):
    _, q, te, _ = trained
    batch = te.slice(0, 12)
    got = q.forward_int(batch)["top"][-1][:, 0]
    assert [int(v) for v in got] == [_reference_int(q, batch, b) for b in range(12)]


def test_dense_quantization(trained):
    _, q, te, _ = trained
    d = q.quantize_inputs(te)
    assert d.min() >= -127 and d.max() <= 127
    np.testing.assert_allclose(d * q.s_dense, np.clip(te.dense, -127 * q.s_dense,
                                                      127 * q.s_dense), atol=q.s_dense / 2 + 1e-9)


def test_accuracy_against_float(trained):
    model, q, te, labels = trained
    pf, pq = model.predict(te), q.predict(te)
    assert abs(auc(labels, pf) - auc(labels, pq)) <= 0.003
    assert np.abs(pf - pq).mean() <= 0.01
    # every stage quantized in float is the integer model up to the requantizer's
    # double rounding (SRDHM, then the rounding shift: +-1 in some pooled vectors)
    every = q.fake_quant_logits(model, te, q.stages())
    assert np.abs(1 / (1 + np.exp(-every)) - pq).mean() < 0.01
    for s in q.stages():
        one = 1 / (1 + np.exp(-q.fake_quant_logits(model, te, [s])))
        assert np.abs(one - pf).mean() < 0.01, s
    np.testing.assert_allclose(q.fake_quant_logits(model, te, []), model.forward(te))
    with pytest.raises(ValueError, match="unknown stages"):
        q.fake_quant_logits(model, te, ["bot_l.1"])


def test_calibration_methods(trained):
    model, _, te, _ = trained
    qm = quantize(model, te, method="max")
    qp = quantize(model, te, method="percentile", percentile=99.0)
    assert qm.s_dense >= qp.s_dense and (qm.s_Z >= qp.s_Z).all() and (qm.s_T >= qp.s_T).all()
    for bad, msg in ((dict(method="mse"), "method must be"), (dict(percentile=20), "percentile")):
        with pytest.raises(ValueError, match=msg):
            quantize(model, te, **bad)


# -- the compiler on the golden executor ------------------------------------------------------

def test_program_bit_exact_with_partial_batch(trained):
    _, q, te, _ = trained
    c = compile_model(q, batch=16, limits=LIMITS, mem_bytes=MEM)
    ops = [type(i).__name__ for i in c.program]
    assert ops == ["Gather", "Gemm", "Gemm", "Interact", "Copy", "Gemm", "Gemm", "Finish"]
    # the interaction rescales pair by pair (PARAMS), each with its own scale
    x = c.program.insns[3]
    assert x.params and len(set(q.s_Z)) == q.arch.n_pairs and len(set(q.s_T)) == q.arch.n_vec
    batch = te.slice(0, 40)                 # 16 + 16 + 8: the last batch padded
    r = run_model(GoldenDevice(MEM, LIMITS), c, batch)
    np.testing.assert_array_equal(r.acc, q.forward_int(batch)["top"][-1][:, 0])
    np.testing.assert_allclose(r.scores, q.predict(batch))
    assert [b["samples"] for b in r.batches] == [16, 16, 8]


@pytest.mark.parametrize("limits", [
    # M tiled (batch 24 over 8 rows), N tiled by 8, K split at 16 (ACC), tables in groups of 3
    dict(max_m=8, max_k=16, max_n=8, n_tables=3),
    # K split only where the input lies in two places: d = 12 is not a multiple of 8
    dict(max_m=64, max_k=256, max_n=256, n_tables=8),
])
def test_tiled_program_bit_exact(limits):
    arch = DLRMArch(bot=(5, 24, 12), top=(12 + 10, 20, 1), table_rows=(30, 40, 50, 60))
    model = init_dlrm(arch, seed=7)
    data, _ = synthetic_ctr(model, 60, seed=8)
    q = quantize(model, data)
    lim = dataclasses.replace(LIMITS, **limits)
    c = compile_model(q, batch=24, limits=lim, mem_bytes=MEM)
    gemms = [i for i in c.program if isinstance(i, isa.Gemm)]
    assert any(g.acc for g in gemms)
    r = run_model(GoldenDevice(MEM, lim), c, data)
    np.testing.assert_array_equal(r.acc, q.forward_int(data)["top"][-1][:, 0])


def test_kaggle_shape_compiles():
    """The Kaggle-shaped model fits the ULX3S's 32 MiB with tables capped at 100k rows."""
    arch = kaggle_arch(cap=100_000)
    model = init_dlrm(dataclasses.replace(arch, table_rows=(4,) * 26), seed=0)
    # the real tables would take a while to draw: quantize on small ones, then swap in
    # capped-size int8 tables of the same scale for the layout
    data, _ = synthetic_ctr(model, 64, seed=0)
    q = quantize(model, data)
    q.tables = [dataclasses.replace(t, eq=np.zeros((r, 16), np.int8))
                for t, r in zip(q.tables, arch.table_rows)]
    q.arch = arch
    c = compile_model(q, batch=64, limits=LIMITS, mem_bytes=32 << 20)
    assert c.meta["used_bytes"] <= 32 << 20
    assert sum(isinstance(i, isa.Gather) for i in c.program) == 4      # 26 tables, 8 a GATHER
    k = {g.k for g in c.program if isinstance(g, isa.Gemm)}
    assert max(k) <= LIMITS.max_k


def test_refused_by_the_chip(trained):
    _, q, _, _ = trained
    for lim, msg in ((dict(max_vec=4), "5 vectors per sample"), (dict(max_dim=4), "max_dim 4")):
        with pytest.raises(ModelError, match=msg):
            compile_model(q, batch=8, limits=dataclasses.replace(LIMITS, **lim), mem_bytes=MEM)
    with pytest.raises(ModelError, match="does not fit in the chip's 8192 bytes"):
        compile_model(q, batch=8, limits=LIMITS, mem_bytes=8192)
    with pytest.raises(ModelError, match="batch must be in range"):
        compile_model(q, batch=0, limits=LIMITS, mem_bytes=MEM)


def test_pack_batch_refuses(trained):
    _, q, te, _ = trained
    c = compile_model(q, batch=8, limits=LIMITS, mem_bytes=MEM, max_bag=2)
    with pytest.raises(ModelError, match="1..8 samples"):
        pack_batch(c, te.slice(0, 9))
    long = [i for i in range(200) if te.slice(i, i + 1).bag_lengths(0)[0] > 2][0]
    with pytest.raises(ModelError, match="compiled for bags of at most 2"):
        pack_batch(c, te.slice(long, long + 1))


def test_artifact_roundtrip(trained, tmp_path):
    _, q, te, _ = trained
    c = compile_model(q, batch=8, limits=LIMITS, mem_bytes=MEM)
    c.save(tmp_path / "m.seedchip")
    back = Compiled.load(tmp_path / "m.seedchip")
    assert back.program.to_bytes() == c.program.to_bytes()
    assert back.image == c.image and back.meta == c.meta
    batch = te.slice(0, 8)
    np.testing.assert_array_equal(back.quant.forward_int(batch)["top"][-1],
                                  q.forward_int(batch)["top"][-1])
    (tmp_path / "bad.seedchip").write_bytes(b"junk")
    with pytest.raises(ModelError, match="not a compiled seedchip model"):
        Compiled.load(tmp_path / "bad.seedchip")
    assert "estimated" in c.layer_table()


def test_demo_on_golden_executor():
    r = run_demo(lambda c: GoldenDevice(MEM, c.limits), config=CHIP_CONFIG, samples=4000,
                 test=128, epochs=2, seed=3)
    f = r.figures
    assert f["bit_exact"] and f["mismatches"] == 0
    assert abs(f["auc_float"] - f["auc_chip"]) < 0.02
    assert "bit-exact on every sample" in r.report


def test_runner_needs_memory(trained):
    _, q, _, _ = trained
    c = compile_model(q, batch=8, limits=LIMITS, mem_bytes=MEM)
    with pytest.raises(ModelError, match="the device has 8192"):
        ModelRunner(GoldenDevice(8192, LIMITS), c).load()
