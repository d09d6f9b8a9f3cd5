"""The float DLRM as a PyTorch module shaped like the reference's ``DLRM_Net``.

:func:`torch_module` turns a :class:`~seedchip.firmware.dlrm.DLRMFloat` into
an ``nn.Module`` built the way facebookresearch/dlrm's ``dlrm_s_pytorch.py``
builds ``DLRM_Net`` with dot interaction, so its ``state_dict()`` has the
reference's keys and a ``torch.save`` of it is a model ``seedchip compile``
reads:

* ``emb_l``: an ``nn.ModuleList`` of ``nn.EmbeddingBag(rows, d, mode="sum")``;
* ``bot_l`` / ``top_l``: ``nn.Sequential(Linear, ReLU, ..., Linear, act)``
  as the reference's ``create_mlp`` makes them, ``act`` = ReLU for the bottom
  MLP and Sigmoid for the top one (so ``Linear`` sits at even indices);
* ``forward(dense_x, lS_o, lS_i)`` (the reference's argument order: offsets
  before indices, one tensor of each per table): bottom MLP, the bags, the
  dot interaction (``T = [x, e_1, ..., e_F]``, ``Z = T T^T`` by ``torch.bmm``,
  its strict lower triangle in the order (1,0), (2,0), (2,1), ... after
  ``x``), top MLP; it returns click probabilities ``[B, 1]``.

It is the PyTorch float baseline of the benchmark and the check that the
NumPy float model (:meth:`DLRMFloat.forward`) computes what PyTorch does.
PyTorch is the optional ``torch`` extra and is imported only here, when called.
"""

from __future__ import annotations

import functools

import numpy as np

from .dlrm import DLRMArch, DLRMFloat, Inputs, interaction_pairs

__all__ = ["torch_module", "torch_inputs", "torch_predict"]

_MISSING = "the PyTorch model needs PyTorch: pip install 'seedchip[torch]'"


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(_MISSING) from None
    return torch


@functools.cache
def _net_class():
    torch = _torch()
    nn = torch.nn

    def create_mlp(widths, sigmoid_layer):
        layers = []
        for i, (n, m) in enumerate(zip(widths, widths[1:])):
            layers += [nn.Linear(n, m, bias=True),
                       nn.Sigmoid() if i == sigmoid_layer else nn.ReLU()]
        return nn.Sequential(*layers)

    class DLRMNet(nn.Module):
        """``DLRM_Net`` (dot interaction, no self-interaction) of shape ``arch``."""

        def __init__(self, arch: DLRMArch):
            super().__init__()
            self.arch = arch
            self.emb_l = nn.ModuleList(nn.EmbeddingBag(rows, arch.dim, mode="sum")
                                       for rows in arch.table_rows)
            self.bot_l = create_mlp(arch.bot, sigmoid_layer=-1)
            self.top_l = create_mlp(arch.top, sigmoid_layer=len(arch.top) - 2)
            li, lj = zip(*interaction_pairs(arch.n_vec))
            # not persistent: the state_dict keeps the reference's keys only
            self.register_buffer("li", torch.tensor(li), persistent=False)
            self.register_buffer("lj", torch.tensor(lj), persistent=False)

        def interact_features(self, x, ly):
            batch, d = x.shape
            t = torch.cat([x] + ly, dim=1).view(batch, -1, d)
            z = torch.bmm(t, torch.transpose(t, 1, 2))
            return torch.cat([x, z[:, self.li, self.lj]], dim=1)

        def forward(self, dense_x, lS_o, lS_i):  # noqa: N803 (the reference's names)
            x = self.bot_l(dense_x)
            ly = [bag(idx, off) for bag, idx, off in zip(self.emb_l, lS_i, lS_o)]
            return self.top_l(self.interact_features(x, ly))

    return DLRMNet


def torch_module(model: DLRMFloat):
    """A ``DLRM_Net``-shaped ``torch.nn.Module`` holding ``model``'s weights
    (float32, on the CPU, in eval mode). ImportError without PyTorch."""
    torch = _torch()
    net = _net_class()(model.arch)
    net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v, np.float32))
                         for k, v in model.state_dict().items()})
    return net.eval()


def torch_inputs(inputs: Inputs):
    """``(dense_x, lS_o, lS_i)`` for the module's ``forward``."""
    torch = _torch()
    return (torch.from_numpy(np.ascontiguousarray(inputs.dense, np.float32)),
            [torch.from_numpy(o) for o in inputs.offsets],
            [torch.from_numpy(i) for i in inputs.indices])


def torch_predict(net, inputs: Inputs) -> np.ndarray:
    """Click probabilities ``[B]`` (float64) of ``net`` on ``inputs``."""
    torch = _torch()
    inputs.check(net.arch)
    with torch.inference_mode():
        p = net(*torch_inputs(inputs))
    return p[:, 0].double().numpy()
