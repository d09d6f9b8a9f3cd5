"""The DLRM with PyTorch (the optional ``torch`` extra; skipped without it):
the ``DLRM_Net``-shaped module against the NumPy float model, ``.pt`` files
through the loader and ``seedchip compile``, the ``.pt`` files refused, and
the benchmark's PyTorch float figure."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from seedchip.cli import main  # noqa: E402
from seedchip.firmware.compiler import Compiled  # noqa: E402
from seedchip.firmware.dlrm import DLRMArch, DLRMFloat, Inputs, ModelError  # noqa: E402
from seedchip.firmware.dlrm_train import SMALL_ARCH, init_dlrm, synthetic_ctr  # noqa: E402
from seedchip.firmware.dlrm_torch import torch_module, torch_predict  # noqa: E402

# three Linear layers in each MLP (Sequential indices 0, 2, 4), 3 tables:
# 4 vectors of dimension 6, 6 pairs
DEEP_ARCH = DLRMArch(bot=(5, 12, 10, 6), top=(12, 9, 7, 1), table_rows=(30, 1, 50))


def _inputs(arch, batch, seed):
    """Random inputs with empty bags: the first and the last bag of every table,
    every bag of the last table, and random ones."""
    rng = np.random.default_rng(seed)
    idx, off = [], []
    for t, rows in enumerate(arch.table_rows):
        n = rng.integers(0, 5, batch)
        n[[0, -1]] = 0
        if t == arch.n_tables - 1:
            n[:] = 0
        off.append(np.concatenate([[0], np.cumsum(n)[:-1]]))
        idx.append(rng.integers(0, rows, n.sum()))
    return Inputs(rng.normal(size=(batch, arch.n_dense)).astype(np.float32), idx, off)


@pytest.mark.parametrize("arch, seed", [(SMALL_ARCH, 0), (DEEP_ARCH, 1)])
def test_module_equals_the_numpy_model(arch, seed):
    model = init_dlrm(arch, seed=seed)
    inputs = _inputs(arch, 64, seed=seed + 10)
    net = torch_module(model)
    want = model.predict(inputs)
    assert want.std() > 1e-3, "the check needs probabilities that differ"
    np.testing.assert_allclose(torch_predict(net, inputs), want, rtol=0, atol=1e-5,
                               err_msg=f"seed {seed}")
    # the reference's layout: Linear at even indices, ReLU after each (bottom) /
    # Sigmoid after the last (top), no other keys
    assert [type(m).__name__ for m in net.top_l] == (["Linear", "ReLU"] * (len(arch.top) - 2)
                                                     + ["Linear", "Sigmoid"])
    assert all(type(m).__name__ == "ReLU" for m in net.bot_l[1::2])
    assert sorted(net.state_dict()) == sorted(model.state_dict())
    assert all(e.mode == "sum" for e in net.emb_l)


def test_module_refuses_inputs_the_model_does_not_take():
    net = torch_module(init_dlrm(SMALL_ARCH, seed=0))
    with pytest.raises(ModelError, match="the model takes 4"):
        torch_predict(net, _inputs(DEEP_ARCH, 4, seed=0))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """dlrm.npz and dlrm.pt of one model (the .pt from the torch module's
    state_dict), calib.npz."""
    d = tmp_path_factory.mktemp("dlrm_torch")
    model = init_dlrm(SMALL_ARCH, seed=2)
    model.save(d / "dlrm.npz")
    torch.save(torch_module(model).state_dict(), d / "dlrm.pt")
    synthetic_ctr(model, 300, seed=3)[0].save(d / "calib.npz")
    return d


def test_pt_equals_npz(files, tmp_path):
    a, b = DLRMFloat.load(files / "dlrm.pt"), DLRMFloat.load(files / "dlrm.npz")
    assert a.arch == b.arch
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(a.state_dict()[k], v, err_msg=k)
    # the checkpoint dlrm_s_pytorch.py --save-model writes holds it under "state_dict"
    torch.save({"epoch": 1, "iter": 10, "state_dict": torch_module(b).state_dict()},
               tmp_path / "ckpt.pt")
    c = DLRMFloat.load(tmp_path / "ckpt.pt")
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(c.state_dict()[k], v, err_msg=k)


def test_compile_pt_equals_npz(files, tmp_path, capsys):
    """``seedchip compile`` writes the same artifact from the .pt as from the .npz."""
    out = {}
    for ext in ("npz", "pt"):
        out[ext] = tmp_path / f"{ext}.seedchip"
        assert main(["compile", "--model", str(files / f"dlrm.{ext}"), "--calib",
                     str(files / "calib.npz"), "--out", str(out[ext]), "--batch", "32"]) == 0
    capsys.readouterr()
    a, b = Compiled.load(out["pt"]), Compiled.load(out["npz"])
    assert a.program.to_bytes() == b.program.to_bytes()
    assert out["pt"].read_bytes() == out["npz"].read_bytes()


class DLRM_Net(torch.nn.Module):  # noqa: N801 (the reference's class name)
    """A user's own model class, pickled whole by ``torch.save(model)``."""

    def __init__(self, net):
        super().__init__()
        self.emb_l, self.bot_l, self.top_l = net.emb_l, net.bot_l, net.top_l


def _refused(capsys, files, path):
    """The one-line error of ``seedchip compile --model path`` (exit status 2),
    which is also the ModelError's message."""
    with pytest.raises(ModelError) as e:
        DLRMFloat.load(path)
    assert "\n" not in str(e.value)
    assert main(["compile", "--model", str(path), "--calib", str(files / "calib.npz"),
                 "--out", str(path.with_suffix(".seedchip"))]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("[")]
    assert len(err) == 1 and err[0].startswith("seedchip compile: error: "), err
    assert str(e.value) in err[0]
    return str(e.value)


def test_whole_module_refused(files, tmp_path, capsys, no_sim):
    """torch.save(model) pickles the class; with weights_only=True torch.load
    refuses it (in a dozen lines): one line says to save the state_dict."""
    p = tmp_path / "whole.pt"
    torch.save(DLRM_Net(torch_module(DLRMFloat.load(files / "dlrm.npz"))), p)
    msg = _refused(capsys, files, p)
    assert "holds a pickled " in msg and "DLRM_Net, not only tensors" in msg
    assert "torch.save(model.state_dict(), 'whole.pt')" in msg


@pytest.mark.parametrize("name, content, detail", [
    ("junk.pt", lambda pt: b"not a torch file", "Unsupported operand"),
    ("cut.pt", lambda pt: pt[:200], "PytorchStreamReader failed reading zip archive"),
])
def test_corrupt_pt_refused(files, tmp_path, capsys, no_sim, name, content, detail):
    p = tmp_path / name
    p.write_bytes(content((files / "dlrm.pt").read_bytes()))
    msg = _refused(capsys, files, p)
    assert "not a state_dict torch.load can read" in msg and detail in msg


def test_host_speed_measures_pytorch():
    from seedchip.firmware.dlrm_bench import _host_speed
    from seedchip.firmware.quant import quantize

    model = init_dlrm(SMALL_ARCH, seed=0)
    data = synthetic_ctr(model, 64, seed=1)[0]
    h = _host_speed(model, quantize(model, data), data, reps=3)
    assert h["pytorch_float"] > 0 and h["numpy_float"] > 0 and h["numpy_int8"] > 0
    assert h["pytorch_float_default_threads"] > 0
    assert h["pytorch_default_threads"] == torch.get_num_threads()      # and left as it was
    assert "pytorch_float_reason" not in h
    print(f"batch 64, small DLRM: {h}")
