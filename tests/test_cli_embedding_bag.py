"""``seedchip embedding-bag --device unit``: bags on the simulated engine + SDRAM, as a
user runs them (on the whole chip, the default ``--device sim``: tests/test_chip.py).

The first run builds the simulation (about 1.5 min); later runs reuse it.
"""

import numpy as np
import pytest

from seedchip.boardsim import cli_gather_sim
from seedchip.cli import main
from seedchip.emb_protocol import GatherError
from seedchip.sim.emb_golden import embedding_bag_ref
from seedchip.sim.gather_run import describe_error, run_embedding_bag


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("emb")
    rng = np.random.default_rng(7)
    table = rng.integers(-128, 128, (300, 24)).astype(np.int8)
    indices = rng.integers(0, 300, 40)
    indices[:3] = [299, 299, 0]                 # last row, a duplicate, row 0
    offsets = np.array([0, 3, 3, 17])           # an empty bag; the last runs to the end
    weights = rng.integers(-128, 128, 40).astype(np.int8)
    paths = {}
    for name, arr in (("T", table), ("I", indices), ("O", offsets), ("W", weights),
                      ("Ibad", np.array([4, -1, 7])), ("Obad", np.array([0, 1])),
                      ("Tf", table.astype(np.float32))):
        paths[name] = str(d / f"{name}.npy")
        np.save(paths[name], arr)
    paths["dir"] = d
    return paths, table, indices, offsets, weights


@pytest.mark.parametrize("mode,weighted", [("mean", False), ("max", False), ("sum", True)])
def test_pooled_matches_pytorch_semantics(files, capsys, mode, weighted):
    paths, table, indices, offsets, weights = files
    out = str(paths["dir"] / f"P_{mode}.npy")
    argv = ["embedding-bag", "--device", "unit", "--table", paths["T"], "--indices", paths["I"],
            "--offsets", paths["O"], "--mode", mode, "--out", out]
    if weighted:
        argv += ["--weights", paths["W"]]
    assert main(argv) == 0
    got = np.load(out)
    want = embedding_bag_ref(table, indices, list(offsets) + [len(indices)], mode,
                             per_sample_weights=weights if weighted else None)
    assert got.dtype == np.int32 and got.shape == (4, 24)
    np.testing.assert_array_equal(got, want)
    assert not got[1].any()                     # the empty bag
    text = capsys.readouterr().out
    assert "4 of 4 bags pooled" in text and "40 lookups" in text and "lookups/cycle" in text


def test_out_of_range_fatal_is_refused_before_simulating(files, capsys):
    paths = files[0]
    rc = main(["embedding-bag", "--table", paths["T"], "--indices", paths["Ibad"],
               "--offsets", paths["Obad"]])
    assert rc == 2
    err = capsys.readouterr().err
    # the index as the user gave it, not the wire's 4294967295
    assert "indices[1] = -1 (bag 1) is outside the table's rows 0..299" in err


def test_engine_fatal_status_names_the_index_as_given(files):
    """The API runs the engine's own FATAL path; its error status comes back
    with the caller's index (-1), not the wire's all-ones value."""
    table = files[1]
    r = run_embedding_bag(table, np.array([4, -1, 7]), np.array([0, 1]), bounds="fatal",
                          config=cli_gather_sim())
    assert r.error == GatherError.OUT_OF_RANGE
    assert (r.error_bag, r.error_index, r.error_position) == (1, -1, 1)
    assert "index -1 is outside the table" in describe_error(r.error, r.error_bag, r.error_index)
    np.testing.assert_array_equal(r.pooled, [table[4]])     # the bag before it came out


def test_index_past_32_bits_is_clamped_not_wrapped(files, capsys):
    """2**32 + 3 is out of range: clamp reads row 0, never row 3 (index mod 2**32)."""
    paths, table = files[0], files[1]
    d = paths["dir"]
    np.save(d / "Iwide.npy", np.array([5, 2**32 + 3, 9], dtype=np.int64))
    np.save(d / "Ow.npy", np.array([0]))
    out = str(d / "P_wide.npy")
    assert main(["embedding-bag", "--device", "unit", "--table", paths["T"],
                 "--indices", str(d / "Iwide.npy"),
                 "--offsets", str(d / "Ow.npy"), "--bounds", "clamp", "--out", out]) == 0
    want = embedding_bag_ref(table, np.array([5, 0, 9]), [0, 3], "sum")
    np.testing.assert_array_equal(np.load(out), want)
    text = capsys.readouterr().out
    assert "1 clamped to row 0, 0 skipped" in text
    # the banner says what is simulated: the 12 ns SDRAM clock of the run
    assert "IS42S16160 model at a 12 ns clock" in text and "143 MHz" not in text


def test_out_of_range_skip(files, capsys):
    paths, table = files[0], files[1]
    out = str(paths["dir"] / "P_skip.npy")
    assert main(["embedding-bag", "--device", "unit", "--table", paths["T"], "--indices",
                 paths["Ibad"], "--offsets", paths["Obad"], "--bounds", "skip", "--out", out]) == 0
    np.testing.assert_array_equal(np.load(out), [table[4].astype(np.int64), table[7]])
    assert "0 clamped to row 0, 1 skipped" in capsys.readouterr().out


def test_bad_input_files(files, capsys):
    paths = files[0]
    assert main(["embedding-bag", "--table", paths["Tf"], "--indices", paths["I"],
                 "--offsets", paths["O"]]) == 2
    assert "table must be int8, not float32" in capsys.readouterr().err
    assert main(["embedding-bag", "--table", paths["T"], "--indices", paths["I"],
                 "--offsets", paths["O"], "--weights", paths["I"]]) == 2
    assert "weights must be int8" in capsys.readouterr().err
