"""The DLRM a user brings: its architecture, float reference and inputs.

The model is the reference DLRM of Naumov et al. (facebookresearch/dlrm,
``DLRM_Net`` in ``dlrm_s_pytorch.py``) with dot interaction:

* bottom MLP on the dense features, every ``Linear`` followed by ReLU (the
  last one too);
* one ``nn.EmbeddingBag(mode="sum")`` per sparse feature, all of dimension
  ``d`` = the bottom MLP's output width;
* dot interaction without self-interaction: with ``T = [x, e_1, ..., e_F]``
  the dot products of the strict lower triangle in the order (1,0), (2,0),
  (2,1), (3,0), ..., concatenated after ``x`` (:func:`interaction_pairs`);
* top MLP, ReLU after every ``Linear`` but the last, which is followed by a
  sigmoid.

A model is a ``state_dict`` with that model's key names: ``emb_l.{t}.weight``
``[rows, d]``, ``bot_l.{i}.weight`` ``[out, in]`` / ``bot_l.{i}.bias``,
``top_l.{i}.weight`` / ``.bias``, where ``i`` counts the ``Sequential``'s
modules so that the ``Linear`` layers sit at even ``i``. It is read from an
``.npz`` with those keys (NumPy only) or from a ``torch.save`` file (needs
PyTorch, the optional ``torch`` extra; a dict holding it under ``"state_dict"``,
as ``dlrm_s_pytorch.py --save-model`` writes, is read too).
:mod:`~seedchip.firmware.dlrm_torch` builds the PyTorch module back from a
:class:`DLRMFloat`. The architecture (:class:`DLRMArch`)
follows from the weight shapes; a state_dict that is not such a DLRM is
refused with :class:`ModelError` saying what and why.

Inputs (:class:`Inputs`, an ``.npz``): ``dense`` float32 ``[B, n_dense]``
and per table ``t`` ``indices_{t}`` (int64) and ``offsets_{t}`` (int64
``[B]``: PyTorch EmbeddingBag offsets, bag ``b`` is
``indices[offsets[b]:offsets[b+1]]``, the last bag runs to the end).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

__all__ = ["ModelError", "DLRMArch", "DLRMFloat", "Inputs", "interaction_pairs",
           "load_state_dict", "sigmoid"]


class ModelError(ValueError):
    """A model or input the chip's DLRM does not support; the message says what and why."""


def interaction_pairs(n_vec: int) -> list[tuple[int, int]]:
    """The (i, j) of the strict lower triangle in DLRM's order: (1,0), (2,0), (2,1), ..."""
    return [(i, j) for i in range(n_vec) for j in range(i)]


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))     # = 1 / (1 + exp(-x)), without overflow


@dataclasses.dataclass(frozen=True)
class DLRMArch:
    """The shape of a DLRM: ``bot`` and ``top`` are the MLPs' widths, input
    first (Kaggle: ``bot=(13, 512, 256, 64, 16)``, ``top=(367, 512, 256, 1)``);
    ``table_rows`` the rows of each embedding table, of dimension ``dim``."""
    bot: tuple[int, ...]
    top: tuple[int, ...]
    table_rows: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "bot", tuple(int(w) for w in self.bot))
        object.__setattr__(self, "top", tuple(int(w) for w in self.top))
        object.__setattr__(self, "table_rows", tuple(int(r) for r in self.table_rows))
        if len(self.bot) < 2 or len(self.top) < 2:
            raise ModelError("the bottom and the top MLP need at least one Linear layer each")
        if min(self.bot + self.top) < 1:
            raise ModelError(f"layer widths must be positive, not bot={self.bot} top={self.top}")
        if not self.table_rows:
            raise ModelError("the model has no embedding table (emb_l.0.weight)")
        if min(self.table_rows) < 1:
            raise ModelError(f"every table needs at least one row, not {self.table_rows}")
        if self.top[-1] != 1:
            raise ModelError(f"the top MLP must end in one output (the click logit), not "
                             f"{self.top[-1]}")
        if self.top[0] != self.interaction_width:
            raise ModelError(
                f"the top MLP's input width is {self.top[0]}, but the dot interaction of the "
                f"bottom MLP's output and {self.n_tables} tables of dimension {self.dim} gives "
                f"{self.dim} + {self.n_pairs} = {self.interaction_width} (only DLRM's dot "
                f"interaction without self-interaction is supported)")

    @property
    def n_dense(self) -> int:
        return self.bot[0]

    @property
    def dim(self) -> int:
        return self.bot[-1]

    @property
    def n_tables(self) -> int:
        return len(self.table_rows)

    @property
    def n_vec(self) -> int:
        return self.n_tables + 1

    @property
    def n_pairs(self) -> int:
        return self.n_vec * (self.n_vec - 1) // 2

    @property
    def interaction_width(self) -> int:
        return self.dim + self.n_pairs

    def mlp_macs(self) -> int:
        """Multiply-accumulates of both MLPs per sample."""
        return sum(a * b for mlp in (self.bot, self.top) for a, b in zip(mlp, mlp[1:]))

    def describe(self) -> str:
        return (f"DLRM: {self.n_dense} dense features, bottom MLP {'-'.join(map(str, self.bot))}, "
                f"{self.n_tables} tables of dimension {self.dim} "
                f"({sum(self.table_rows)} rows), top MLP {'-'.join(map(str, self.top))}")


_KEY = re.compile(r"^(bot_l|top_l)\.(\d+)\.(weight|bias)$|^emb_l\.(\d+)\.weight$")


def load_state_dict(path) -> dict[str, np.ndarray]:
    """The arrays of a DLRM state_dict saved as ``.npz`` or by ``torch.save``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(f"{path}: no such file")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    try:
        import torch
    except ImportError:
        raise ModelError(
            f"{path}: reading a torch.save file needs PyTorch (pip install 'seedchip[torch]'); "
            f"without it, save the state_dict as .npz: "
            f"np.savez('dlrm.npz', **{{k: v.numpy() for k, v in model.state_dict().items()}})"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:          # pickle errors of all kinds
        raise _torch_load_error(path, e) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]     # dlrm_s_pytorch.py --save-model: a checkpoint holding it
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    return {k: v.detach().float().numpy() if hasattr(v, "detach") else np.asarray(v)
            for k, v in obj.items()}


def _torch_load_error(path, e: Exception) -> ModelError:
    """One line for what ``torch.load(weights_only=True)`` refused: PyTorch's own
    message runs to a dozen lines of advice about ``weights_only=False``, which
    seedchip does not take (unpickling an object can run any code)."""
    text = str(e)
    if m := re.search(r"Unsupported global: GLOBAL ([\w.]+)", text):
        return ModelError(
            f"{path}: holds a pickled {m.group(1)}, not only tensors (a whole model saved by "
            f"torch.save(model)?); seedchip reads them with weights_only=True, so save the "
            f"state_dict alone: torch.save(model.state_dict(), '{os.path.basename(path)}')")
    m = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    detail = m.group(1) if m else (text.strip().splitlines() or [type(e).__name__])[0]
    return ModelError(f"{path}: not a state_dict torch.load can read "
                      f"({detail.split('. ')[0].rstrip('.')})")


def _mlp(sd, prefix):
    """[(W, b)] of the Linear layers at even module indices of ``prefix``."""
    idx = sorted({int(m.group(2)) for k in sd if (m := _KEY.match(k)) and m.group(1) == prefix})
    if not idx:
        raise ModelError(f"the state_dict has no {prefix}.*.weight: not a DLRM_Net state_dict")
    if idx != list(range(0, 2 * len(idx), 2)):
        raise ModelError(f"{prefix} has Linear layers at module indices {idx}; DLRM_Net's "
                         f"Sequential puts them at 0, 2, 4, ... (Linear, ReLU, Linear, ...)")
    layers = []
    for n, i in enumerate(idx):
        w, b = sd.get(f"{prefix}.{i}.weight"), sd.get(f"{prefix}.{i}.bias")
        if w is None or b is None:
            raise ModelError(f"{prefix}.{i} needs both .weight and .bias")
        w, b = np.asarray(w, np.float32), np.asarray(b, np.float32)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ModelError(f"{prefix}.{i}: weight {w.shape} and bias {b.shape} are not a Linear "
                             f"layer's [out, in] and [out]")
        if layers and layers[-1][0].shape[0] != w.shape[1]:
            raise ModelError(f"{prefix}.{i} takes {w.shape[1]} inputs but the layer before it "
                             f"gives {layers[-1][0].shape[0]}")
        layers.append((w, b))
    return layers


@dataclasses.dataclass
class DLRMFloat:
    """The float DLRM: ``bot``/``top`` lists of ``(W [out, in], b [out])``,
    ``emb`` the tables ``[rows, dim]``, all float32."""
    bot: list
    top: list
    emb: list

    def __post_init__(self):
        self.arch = DLRMArch(bot=(self.bot[0][0].shape[1],) + tuple(w.shape[0] for w, _ in self.bot),
                             top=(self.top[0][0].shape[1],) + tuple(w.shape[0] for w, _ in self.top),
                             table_rows=tuple(e.shape[0] for e in self.emb))
        for t, e in enumerate(self.emb):
            if e.shape[1] != self.arch.dim:
                raise ModelError(f"emb_l.{t} has dimension {e.shape[1]}, but the bottom MLP's "
                                 f"output (the dot interaction's vectors) is {self.arch.dim} wide")

    @classmethod
    def from_state_dict(cls, sd) -> "DLRMFloat":
        unknown = sorted(k for k in sd if not _KEY.match(k))
        if unknown:
            raise ModelError(f"unexpected keys {unknown[:4]}{'...' if len(unknown) > 4 else ''}: "
                             f"a DLRM_Net state_dict has only emb_l.*, bot_l.*, top_l.*")
        tables = sorted(int(m.group(4)) for k in sd if (m := _KEY.match(k)) and m.group(4))
        if tables != list(range(len(tables))):
            raise ModelError(f"emb_l tables are numbered {tables}, not 0..{len(tables) - 1}")
        emb = []
        for t in tables:
            e = np.asarray(sd[f"emb_l.{t}.weight"], np.float32)
            if e.ndim != 2:
                raise ModelError(f"emb_l.{t}.weight has shape {e.shape}, not [rows, dim]")
            emb.append(e)
        if not emb:
            raise ModelError("the state_dict has no emb_l.0.weight: a DLRM needs embedding tables")
        return cls(bot=_mlp(sd, "bot_l"), top=_mlp(sd, "top_l"), emb=emb)

    @classmethod
    def load(cls, path) -> "DLRMFloat":
        return cls.from_state_dict(load_state_dict(path))

    def state_dict(self) -> dict[str, np.ndarray]:
        sd = {f"emb_l.{t}.weight": e for t, e in enumerate(self.emb)}
        for prefix, layers in (("bot_l", self.bot), ("top_l", self.top)):
            for n, (w, b) in enumerate(layers):
                sd[f"{prefix}.{2 * n}.weight"], sd[f"{prefix}.{2 * n}.bias"] = w, b
        return sd

    def save(self, path):
        np.savez(path, **self.state_dict())

    # -- forward ------------------------------------------------------------------

    def forward(self, inputs: "Inputs", *, parts: bool = False):
        """Click logits ``[B]`` (float64 arithmetic on the float32 weights);
        ``parts=True`` also returns the intermediate activations
        (``{"bot": [...], "emb": [...], "interact": R, "top": [...]}``)."""
        inputs.check(self.arch)
        x = inputs.dense.astype(np.float64)
        bot = []
        for w, b in self.bot:
            x = np.maximum(x @ w.T.astype(np.float64) + b, 0.0)
            bot.append(x)
        pooled = [bag_sum(e.astype(np.float64), inputs.indices[t], inputs.offsets[t])
                  for t, e in enumerate(self.emb)]
        r = interact(x, pooled)
        y, top = r, []
        for n, (w, b) in enumerate(self.top):
            y = y @ w.T.astype(np.float64) + b
            if n < len(self.top) - 1:
                y = np.maximum(y, 0.0)
            top.append(y)
        logits = y[:, 0]
        if parts:
            return logits, {"bot": bot, "emb": pooled, "interact": r, "top": top}
        return logits

    def predict(self, inputs: "Inputs") -> np.ndarray:
        """Click probabilities ``[B]``."""
        return sigmoid(self.forward(inputs))


def bag_sum(table, indices, offsets):
    """EmbeddingBag(mode="sum"): ``[B, dim]`` sums of ``table`` rows per bag."""
    indices = np.asarray(indices, np.int64)
    ends = np.append(np.asarray(offsets, np.int64)[1:], indices.size)
    bag = np.repeat(np.arange(len(ends)), np.diff(np.concatenate([[0], ends])))
    out = np.zeros((len(ends), table.shape[1]), dtype=table.dtype)
    np.add.at(out, bag, table[indices])
    return out


def interact(x, pooled):
    """DLRM's dot interaction: ``[x, Z]`` with Z the strict lower triangle of
    ``T T^T``, ``T = [x, e_1, ..., e_F]`` per sample."""
    t = np.stack([x] + list(pooled), axis=1)                  # [B, n_vec, d]
    z = np.einsum("bid,bjd->bij", t, t)
    i, j = np.tril_indices(t.shape[1], -1)                    # (1,0), (2,0), (2,1), ...
    return np.concatenate([x, z[:, i, j]], axis=1)


@dataclasses.dataclass
class Inputs:
    """A batch: ``dense`` ``[B, n_dense]`` float32, per table ``indices[t]``
    (int64) and ``offsets[t]`` (int64 ``[B]``, PyTorch EmbeddingBag offsets)."""
    dense: np.ndarray
    indices: list
    offsets: list

    def __post_init__(self):
        self.dense = np.asarray(self.dense, np.float32)
        self.indices = [np.asarray(i, np.int64).reshape(-1) for i in self.indices]
        self.offsets = [np.asarray(o, np.int64).reshape(-1) for o in self.offsets]
        if self.dense.ndim != 2:
            raise ModelError(f"dense must be [B, n_dense], not shape {self.dense.shape}")
        if len(self.indices) != len(self.offsets):
            raise ModelError(f"{len(self.indices)} indices_* arrays but {len(self.offsets)} "
                             f"offsets_* arrays")
        for t, (idx, off) in enumerate(zip(self.indices, self.offsets)):
            if off.size != self.batch:
                raise ModelError(f"offsets_{t} has {off.size} entries, but the batch has "
                                 f"{self.batch} samples (dense has {self.batch} rows)")
            if self.batch and off[0] != 0:
                raise ModelError(f"offsets_{t}[0] is {off[0]}, not 0")
            if np.any(np.diff(off) < 0) or (off.size and off[-1] > idx.size):
                raise ModelError(f"offsets_{t} must be non-decreasing and at most the number of "
                                 f"indices ({idx.size})")

    @property
    def batch(self) -> int:
        return self.dense.shape[0]

    def bag_lengths(self, t: int) -> np.ndarray:
        return np.diff(np.append(self.offsets[t], self.indices[t].size))

    def check(self, arch: DLRMArch):
        """ModelError unless these inputs fit ``arch``."""
        if self.dense.shape[1] != arch.n_dense:
            raise ModelError(f"dense has {self.dense.shape[1]} features; the model takes "
                             f"{arch.n_dense}")
        if len(self.indices) != arch.n_tables:
            raise ModelError(f"the inputs have {len(self.indices)} tables (indices_*); the model "
                             f"has {arch.n_tables}")
        for t, idx in enumerate(self.indices):
            if idx.size and (idx.min() < 0 or idx.max() >= arch.table_rows[t]):
                bad = idx[(idx < 0) | (idx >= arch.table_rows[t])][0]
                raise ModelError(f"indices_{t} holds {bad}, outside table {t}'s rows "
                                 f"0..{arch.table_rows[t] - 1}")

    def slice(self, lo: int, hi: int) -> "Inputs":
        """Samples ``lo..hi-1`` with their bags (offsets rebased to 0)."""
        idx, off = [], []
        for t in range(len(self.indices)):
            ends = np.append(self.offsets[t], self.indices[t].size)
            a, b = ends[lo], ends[hi]
            idx.append(self.indices[t][a:b])
            off.append(self.offsets[t][lo:hi] - a)
        return Inputs(self.dense[lo:hi], idx, off)

    @classmethod
    def load(cls, path) -> "Inputs":
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ModelError(f"{path}: no such file")
        with np.load(path, allow_pickle=False) as z:
            if "dense" not in z.files:
                raise ModelError(f"{path}: no 'dense' array (float32 [B, n_dense])")
            n = 0
            while f"indices_{n}" in z.files:
                n += 1
            missing = [f"offsets_{t}" for t in range(n) if f"offsets_{t}" not in z.files]
            if missing:
                raise ModelError(f"{path}: {missing[0]} is missing")
            return cls(z["dense"], [z[f"indices_{t}"] for t in range(n)],
                       [z[f"offsets_{t}"] for t in range(n)])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"dense": self.dense}
        for t, (i, o) in enumerate(zip(self.indices, self.offsets)):
            out[f"indices_{t}"], out[f"offsets_{t}"] = i, o
        return out

    def save(self, path, **extra):
        np.savez(path, **self.arrays(), **extra)
