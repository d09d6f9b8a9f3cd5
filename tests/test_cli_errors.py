"""A user's mistakes on the command line get a clear answer, never a wrong one.

Every case here runs the ``seedchip`` command as a user would (``main([...])``
or the installed entry point) and checks three things: the exit status (2 for a
usage or input mistake, 1 for a failure of the work), one line on stderr with
the ``seedchip <command>: error:`` prefix that says what is wrong, and that
nothing long ran first (the simulator entry points are replaced by a trap).
The runs that do simulate are in ``test_cli_embedding_bag.py``.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seedchip.boardsim import cli_gather_sim
from seedchip.cli import main
from seedchip.sim import gather_run, runner


@pytest.fixture
def no_sim(monkeypatch):
    """Fail the test if anything elaborates, builds or simulates."""
    def trap(*args, **kwargs):
        raise AssertionError("the simulator was started for input the host can refuse")
    monkeypatch.setattr(runner, "generate_verilog", trap)
    monkeypatch.setattr(runner, "build_sim", trap)
    monkeypatch.setattr(runner, "run_cocotb", trap)


@pytest.fixture
def files(tmp_path):
    table = np.arange(40, dtype=np.int8).reshape(10, 4)
    arrays = {
        "T": table,
        "I": np.array([0, 1, 2, 3], dtype=np.int64),
        "O": np.array([0, 2], dtype=np.int64),
        "A": np.ones((4, 8), dtype=np.int8),
        "B": np.ones((8, 4), dtype=np.int8),
    }
    paths = {}
    for name, arr in arrays.items():
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], arr)
    paths["dir"] = tmp_path
    return paths


def _save(tmp_path, name, arr):
    p = str(tmp_path / name)
    np.save(p, arr)
    return p


def _emb(paths, **kw):
    argv = ["embedding-bag", "--table", kw.pop("table", paths["T"]),
            "--indices", kw.pop("indices", paths["I"]),
            "--offsets", kw.pop("offsets", paths["O"])]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return main(argv)


def _one_error_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"seedchip {command}: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


# -- silent wrong answers ------------------------------------------------------------------

@pytest.mark.parametrize("index", [2**32 + 3, 2**40, -1, -2**33])
def test_index_not_representable_on_the_wire_is_out_of_range(files, capsys, no_sim, index):
    """2**32 + 3 once read row 3 (index mod 2**32), even with --bounds fatal."""
    idx = _save(files["dir"], "Ibig.npy", np.array([0, 1, index, 3], dtype=np.int64))
    assert _emb(files, indices=idx, bounds="fatal") == 2
    line = _one_error_line(capsys, "embedding-bag")
    # reported as the user gave it, with its position and bag
    assert f"indices[2] = {index} (bag 1) is outside the table's rows 0..9" in line


def test_uint64_indices_past_int64(files, capsys, no_sim):
    idx = _save(files["dir"], "Iu.npy", np.array([0, 2**64 - 1], dtype=np.uint64))
    assert _emb(files, indices=idx, offsets=_save(files["dir"], "O1.npy", np.array([0]))) == 2
    assert f"indices[1] = {2**64 - 1} (bag 0)" in _one_error_line(capsys, "embedding-bag")


def test_wire_form_never_wraps():
    top = 2**32 - 1
    got = gather_run.to_wire([0, 5, top, top + 1, 2**32 + 3, -1, -(2**40)], 32)
    assert got == [0, 5, top, top, top, top, top]
    # all ones is past every table the engine can describe (rows < 2**index_width)
    assert gather_run.to_wire([2**16 + 3], 16) == [2**16 - 1]


def test_include_last_offset_must_end_at_the_indices(files, capsys, no_sim):
    """A last offset short of len(indices) once dropped the trailing indices."""
    off = _save(files["dir"], "Olast.npy", np.array([0, 2, 3]))
    assert _emb(files, offsets=off, include_last_offset=True) == 2
    assert ("the last offset must equal the number of indices (4), not 3"
            in _one_error_line(capsys, "embedding-bag"))


# -- input mistakes are not hardware failures ----------------------------------------------

@pytest.mark.parametrize("offsets,message", [
    ([0, 7], "offsets[1] = 7 is past the end of the 4 indices"),
    ([0, -2], "offsets[1] = -2 is negative"),
    ([1, 2], "offsets[0] must be 0"),
    ([0, 3, 2], "offsets must not decrease: offsets[1] = 3, offsets[2] = 2"),
    ([], "offsets must not be empty"),
])
def test_bad_offsets(files, capsys, no_sim, offsets, message):
    off = _save(files["dir"], "Obad.npy", np.array(offsets, dtype=np.int64))
    assert _emb(files, offsets=off) == 2
    line = _one_error_line(capsys, "embedding-bag")
    assert message in line
    assert "golden model" not in line


def test_bag_longer_than_the_engine_takes(files, capsys, no_sim):
    n = cli_gather_sim().params.max_bag + 1
    idx = _save(files["dir"], "Ilong.npy", np.zeros(n, dtype=np.int64))
    assert _emb(files, indices=idx, offsets=_save(files["dir"], "O0.npy", np.array([0]))) == 2
    assert f"bag 0 has {n} indices" in _one_error_line(capsys, "embedding-bag")


def test_table_larger_than_memory(files, capsys, no_sim):
    cfg = cli_gather_sim()
    word = cfg.width // 8
    rows = (cfg.mem_words - gather_run.TABLE_BASE) // (64 // word) + 1   # one row too many
    big = np.lib.format.open_memmap(files["dir"] / "Tbig.npy", mode="w+", dtype=np.int8,
                                    shape=(rows, 64))
    del big
    assert _emb(files, table=str(files["dir"] / "Tbig.npy"), device="unit") == 2
    line = _one_error_line(capsys, "embedding-bag")
    assert f"table of {rows:,} rows x 64 bytes" in line and cfg.chip in line
    # one row fewer fits (checked by the function the command uses)
    gather_run.check_fits((rows - 1, 64), cfg)


def test_too_large_for_the_simulated_chip(files, capsys, no_sim):
    """On the chip (--device sim), what does not fit its memory is refused
    before the simulator starts, for embedding-bag and gemm alike."""
    big = np.zeros((40000, 32), np.int8)              # 1.28 MB > the 1 MiB default
    np.save(files["dir"] / "Tsim.npy", big)
    assert _emb(files, table=str(files["dir"] / "Tsim.npy")) == 2
    assert "do not fit in the device's 1048576 bytes" in _one_error_line(capsys, "embedding-bag")
    np.save(files["dir"] / "Abig.npy", np.zeros((4000, 300), np.int8))
    np.save(files["dir"] / "Bbig.npy", np.zeros((300, 8), np.int8))
    assert main(["gemm", "--a", str(files["dir"] / "Abig.npy"), "--b",
                 str(files["dir"] / "Bbig.npy"), "--mem-bytes", "65536"]) == 2
    assert "does not fit in the device's 65536 bytes" in _one_error_line(capsys, "gemm")


def test_weights_need_mode_sum(files, capsys, no_sim):
    w = _save(files["dir"], "W.npy", np.ones(4, dtype=np.int8))
    assert _emb(files, weights=w, mode="max") == 2
    assert "per-sample weights need mode sum" in _one_error_line(capsys, "embedding-bag")


# -- files ---------------------------------------------------------------------------------

def test_npz_where_npy_expected(files, capsys, no_sim):
    p = files["dir"] / "T.npz"
    np.savez(p, table=np.zeros((3, 3), np.int8), other=np.zeros(2))
    assert _emb(files, table=str(p)) == 2
    line = _one_error_line(capsys, "embedding-bag")
    assert "is an .npz archive (arrays: table, other)" in line


def test_text_file_is_not_called_pickled(files, capsys, no_sim):
    p = files["dir"] / "notes.npy"
    p.write_text("0,1,2\n")
    assert _emb(files, indices=str(p)) == 2
    line = _one_error_line(capsys, "embedding-bag")
    assert "is not a NumPy .npy file" in line
    assert "pickle" not in line


def test_object_array(files, capsys, no_sim):
    p = files["dir"] / "obj.npy"
    np.save(p, np.array([{}, 1], dtype=object), allow_pickle=True)
    assert _emb(files, indices=str(p)) == 2
    assert "holds Python objects" in _one_error_line(capsys, "embedding-bag")


def test_missing_file_and_directory(files, capsys, no_sim):
    assert _emb(files, table=str(files["dir"] / "nope.npy")) == 2
    assert "--table: no such file:" in _one_error_line(capsys, "embedding-bag")
    assert _emb(files, table=str(files["dir"])) == 2
    assert "is a directory" in _one_error_line(capsys, "embedding-bag")


def test_gemm_npz_operand(files, capsys, no_sim):
    p = files["dir"] / "A.npz"
    np.savez(p, A=np.ones((2, 2), np.int8))
    assert main(["gemm", "--a", str(p), "--b", files["B"]]) == 2
    assert "--a: " in _one_error_line(capsys, "gemm")


# -- outputs are checked before the work ---------------------------------------------------

def test_out_under_a_file_is_refused_before_simulating(files, capsys, no_sim):
    blocker = files["dir"] / "blocker"
    blocker.write_text("")
    assert _emb(files, out=str(blocker / "P.npy")) == 2
    assert "is a file, not a directory" in _one_error_line(capsys, "embedding-bag")
    assert main(["gemm", "--a", files["A"], "--b", files["B"],
                 "--out", str(blocker / "sub" / "C.npy")]) == 2
    assert "is a file, not a directory" in _one_error_line(capsys, "gemm")


def test_out_into_a_missing_directory_is_created(files, monkeypatch):
    calls = []

    def fake_run(config, a, b, **kw):
        calls.append(kw)
        return a.astype(np.int64) @ b.astype(np.int64), 1
    monkeypatch.setattr("seedchip.sim.gemm_run.run_gemm_rtl", fake_run)
    out = files["dir"] / "new" / "dir" / "C.npy"
    assert main(["gemm", "--device", "unit", "--a", files["A"], "--b", files["B"],
                 "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), np.full((4, 4), 8))
    assert calls and callable(calls[0]["progress"])


def test_generate_out_at_a_file_and_bad_name(files, capsys):
    f = files["dir"] / "afile"
    f.write_text("")
    assert main(["generate", "--out", str(f)]) == 2
    assert "is a file, not a directory" in _one_error_line(capsys, "generate")
    for name, what in (("1abc", "must be a Verilog identifier"), ("my-top", "must be a Verilog"),
                       ("module", "is a Verilog keyword")):
        assert main(["generate", "--name", name, "--out", str(files["dir"] / "v")]) == 2
        assert what in _one_error_line(capsys, "generate")


def test_bench_bad_sizes(capsys):
    assert main(["bench", "--sizes", "3x4"]) == 2
    assert "'3x4' is not MxKxN" in _one_error_line(capsys, "bench")
    assert main(["bench", "--sizes", "8x8x999"]) == 2
    assert "must be in range 1..256" in _one_error_line(capsys, "bench")


# -- the command line as a program ---------------------------------------------------------

def _seedchip(*args, cwd=None):
    exe = Path(sys.executable).with_name("seedchip")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "seedchip.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd,
                          timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_exit_status_and_prefix_are_the_same_across_subcommands(tmp_path):
    missing = str(tmp_path / "missing.npy")
    for args, command in ((["gemm", "--a", missing, "--b", missing], "gemm"),
                          (["embedding-bag", "--table", missing, "--indices", missing,
                            "--offsets", missing], "embedding-bag"),
                          (["generate", "--name", "9"], "generate"),
                          (["bench", "--sizes", "x"], "bench")):
        r = _seedchip(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith(f"seedchip {command}: error: "), r.stderr
        assert "Traceback" not in r.stderr
    # argparse's own mistakes: status 2 and the same prefix
    r = _seedchip("gemm", "--a", missing)
    assert r.returncode == 2 and "seedchip gemm: error: " in r.stderr


def test_help_and_version():
    r = _seedchip("--help")
    assert r.returncode == 0
    assert "recommendation-inference accelerator" in r.stdout and "Exit status" in r.stdout
    r = _seedchip("--version")
    assert r.returncode == 0 and r.stdout.startswith("seedchip ")


def test_bare_make_lists_the_targets_and_builds_nothing():
    import shutil

    import seedchip
    root = Path(seedchip.__file__).resolve().parent
    if not (root / "Makefile").exists() or shutil.which("make") is None:
        pytest.skip("no Makefile (a non-editable install) or no make")
    dry = subprocess.run(["make", "-n"], cwd=root, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0 and "seedchip build" not in dry.stdout
    r = subprocess.run(["make", "--no-print-directory"], cwd=root, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    for target in ("venv", "bitstream", "test", "flash", "bench", "generate", "help"):
        assert f"\n  {target} " in r.stdout, r.stdout
    assert ".venv/bin/seedchip" in r.stdout


def test_argparse_mistakes_are_one_line(capsys):
    for argv, command in ((["build", "--board", "nope"], "build"), (["gemm", "--a"], "gemm"),
                          (["nope"], None)):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        prog = f"seedchip {command}" if command else "seedchip"
        assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), err
        assert err[0].endswith(f"(see {prog} --help)")


def test_bench_refuses_a_config_that_cannot_fit_before_simulating(capsys, no_sim):
    assert main(["bench", "--rows", "64", "--cols", "64"]) == 2
    line = _one_error_line(capsys, "bench")
    assert "rows x cols = 4096 multipliers need" in line and "DSP blocks" in line \
        and "--no-build" in line
