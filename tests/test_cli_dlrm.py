"""``seedchip compile`` / ``run`` / ``demo`` from the command line.

Mistakes are refused in one line with exit status 2 before any simulator
starts (SimChip is replaced by a trap); one compile + run goes through the
simulated chip (Verilator behind the pty) and must be bit-exact.
"""

import json

import numpy as np
import pytest

from seedchip.cli import main
from seedchip.firmware.compiler import Compiled
from seedchip.firmware.dlrm import DLRMFloat, Inputs
from seedchip.firmware.dlrm_train import SMALL_ARCH, init_dlrm, synthetic_ctr, train


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained small DLRM (dlrm.npz), calib.npz, test.npz (with labels)."""
    d = tmp_path_factory.mktemp("dlrm")
    teacher = init_dlrm(SMALL_ARCH, seed=0)
    data, labels = synthetic_ctr(teacher, 3000, seed=1)
    model = train(init_dlrm(SMALL_ARCH, seed=2), data.slice(0, 2800), labels[:2800], epochs=1,
                  seed=3)
    model.save(d / "dlrm.npz")
    data.slice(0, 500).save(d / "calib.npz")
    data.slice(2800, 2900).save(d / "test.npz", label=labels[2800:2900])
    sd = model.state_dict()
    sd["top_l.0.weight"] = np.zeros((16, 20), np.float32)
    np.savez(d / "wide.npz", **sd)
    bad = data.slice(0, 4)
    bad.indices[2][0] = 500                             # table 2 has 128 rows
    bad.save(d / "badidx.npz")
    Inputs(bad.dense, bad.indices[:3], bad.offsets[:3]).save(d / "3tables.npz")
    return d


def _error(capsys, argv, status=2):
    assert main(argv) == status
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("[")]
    assert len(err) == 1, err
    assert err[0].startswith(f"seedchip {argv[0]}: error: "), err
    return err[0]


def _argv(command, base, argv, files):
    """``command`` with the options ``base`` (a dict), those in ``argv`` replacing
    theirs ("{d}" is the files' directory), the others appended."""
    base, extra = dict(base), []
    for i in range(0, len(argv), 2):
        if argv[i] in base:
            base[argv[i]] = argv[i + 1].format(d=files)
        else:
            extra += argv[i:i + 2]
    return [command] + [x for kv in base.items() for x in kv] + extra


def _compile(files, out, *extra):
    return main(["compile", "--model", str(files / "dlrm.npz"), "--calib",
                 str(files / "calib.npz"), "--out", str(out), "--batch", "32", *extra])


def test_compile_prints_the_layer_table(files, tmp_path, capsys):
    assert _compile(files, tmp_path / "m.seedchip", "--memory-map") == 0
    out = capsys.readouterr().out
    for text in ("bottom MLP 4-16-8", "GATHER", "INTERACT", "top_l.2", "estimated",
                 "activations int8 per tensor (percentile 99.99)", "T 0x", "program",
                 "wrote"):
        assert text in out, text
    c = Compiled.load(tmp_path / "m.seedchip")
    assert c.batch == 32 and c.meta["mem_bytes"] == 32 << 20


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope.npz"], "--model: no such file: nope.npz"),
    (["--model", "{d}/calib.npz", "--calib", "{d}/calib.npz"], "a DLRM_Net state_dict has only emb_l.*, bot_l.*, top_l.*"),
    (["--model", "{d}/wide.npz"], "the top MLP's input width is 20"),
    (["--calib", "{d}/3tables.npz"], "--calib: the inputs have 3 tables"),
    (["--calib", "{d}/badidx.npz"], "indices_2 holds 500, outside table 2's rows 0..127"),
    (["--batch", "0"], "--batch must be in range 1..65535"),
    (["--mem-bytes", "16384"], "does not fit in the chip's 16384 bytes"),
    (["--max-k", "0"], "invalid configuration"),
    (["--out", "{d}/dlrm.npz/m.seedchip"], "--out"),
])
def test_compile_refuses(files, tmp_path, capsys, argv, message):
    base = {"--model": f"{files}/dlrm.npz", "--calib": f"{files}/calib.npz",
            "--out": str(tmp_path / "m.seedchip")}
    assert message in _error(capsys, _argv("compile", base, argv, files))


@pytest.fixture(scope="module")
def compiled(files):
    out = files / "m.seedchip"
    assert _compile(files, out, "--max-bag", "4") == 0
    return out


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope.seedchip"], "--model: no such file"),
    (["--model", "{d}/dlrm.npz"], "not a compiled seedchip model"),
    (["--inputs", "{d}/badidx.npz"], "--inputs: indices_2 holds 500"),
    (["--inputs", "{d}/3tables.npz"], "--inputs: the inputs have 3 tables"),
    (["--inputs", "{d}/nope.npz"], "--inputs: no such file"),
    (["--device", "usb"], "--device must be 'sim', 'sim-sdram' or 'serial:PORT'"),
    (["--device", "serial:/dev/ttyNOPE0"], "no serial port /dev/ttyNOPE0"),
    (["--device", "serial:/dev/null", "--preload", "--check"], "--preload is for a simulated chip"),
])
def test_run_refuses(files, compiled, capsys, no_sim, argv, message):
    base = {"--model": str(compiled), "--inputs": f"{files}/test.npz"}
    assert message in _error(capsys, _argv("run", base, argv, files))


def test_run_refuses_long_bags(files, tmp_path, capsys, no_sim):
    assert _compile(files, tmp_path / "m1.seedchip", "--max-bag", "1") == 0
    capsys.readouterr()
    msg = _error(capsys, ["run", "--model", str(tmp_path / "m1.seedchip"), "--inputs",
                          str(files / "test.npz")])
    assert "compiled for bags of at most 1" in msg


def test_demo_refuses(capsys, no_sim):
    assert "--samples must be at least 1000" in _error(capsys, ["demo", "--samples", "10"])
    assert "--device must be" in _error(capsys, ["demo", "--device", "usb"])


def test_run_on_the_simulated_chip(files, compiled, tmp_path, capsys):
    """compile + run through the whole chip under Verilator, bit-exact."""
    scores, js = tmp_path / "scores.npy", tmp_path / "run.json"
    assert main(["run", "--model", str(compiled), "--inputs", str(files / "test.npz"),
                 "--device", "sim", "--check", "--out", str(scores), "--json", str(js),
                 "--profile"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact on every sample" in out
    assert "inferences/s" in out and "labels: AUC" in out
    c = Compiled.load(compiled)
    test = Inputs.load(files / "test.npz")
    np.testing.assert_allclose(np.load(scores), c.quant.predict(test))
    fig = json.loads(js.read_text())
    assert fig["samples"] == 100 and len(fig["cycles_per_batch"]) == 4     # 32+32+32+4
    assert all(c > 0 for c in fig["cycles_per_batch"])
    # each instruction alone: GATHER, 2 GEMMs, INTERACT, COPY, 2 GEMMs; together they
    # take less than the sum (GATHER beside the bottom MLP)
    assert [p["op"] for p in fig["profile"]] == ["GATHER", "GEMM", "GEMM", "INTERACT", "COPY",
                                                 "GEMM", "GEMM"]
    assert fig["cycles_per_batch"][-1] < sum(p["cycles"] for p in fig["profile"])
    model = DLRMFloat.load(files / "dlrm.npz")
    assert np.abs(np.load(scores) - model.predict(test)).mean() < 0.01
