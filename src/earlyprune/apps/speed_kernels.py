"""Real sparse kernels for a masked network, one per structure, for ``earlyprune speed``.

- unstructured: ``torch.sparse`` CSR weights; Linear as CSR × dense, Conv2d as CSR × im2col
  (``F.unfold``) columns. CPU only (PyTorch's CSR matmul), groups=1 convs only.
- fanin: the condensed layout of condensed-sparsity/SRigL: each unit's k kept weights and their
  input indices as dense (units, k) tensors; a layer is a gather and a dense multiply-sum.
- nm:2:4: ``to_sparse_semi_structured`` weights (CUDA, fp16) for Linear and, through im2col
  with the input channels last (the N:M groups' order), for Conv2d; layers whose shape the
  kernel refuses stay dense fp16.
- channel: the shrunk network (:func:`earlyprune.masks.shrink.shrink`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from earlyprune.masks.mask import apply_mask, prunable


class _Im2col(nn.Module):
    """A Conv2d as columns × matrix: subclasses say how the matrix multiplies."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.groups != 1 or not isinstance(conv.padding, tuple):
            raise ValueError(f"no im2col kernel for {conv}")
        self.kernel, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        self.out_channels = conv.out_channels
        self.bias = None if conv.bias is None else conv.bias.detach()

    def columns(self, x: Tensor) -> Tensor:
        return F.unfold(x, self.kernel, self.dilation, self.padding, self.stride)

    def fold(self, out: Tensor, x: Tensor) -> Tensor:
        """(B, O, L) → (B, O, H', W') with the bias added."""
        h, w = x.shape[-2:]
        oh = h + 2 * self.padding[0] - self.dilation[0] * (self.kernel[0] - 1) - 1
        ow = w + 2 * self.padding[1] - self.dilation[1] * (self.kernel[1] - 1) - 1
        out = out.reshape(x.shape[0], self.out_channels, oh // self.stride[0] + 1, -1)
        assert out.shape[-1] == ow // self.stride[1] + 1
        return out if self.bias is None else out + self.bias.reshape(1, -1, 1, 1)


class CSRLinear(nn.Module):
    """y = x Wᵀ + b with W in CSR."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.weight = layer.weight.detach().to_sparse_csr()
        self.bias = None if layer.bias is None else layer.bias.detach()

    def forward(self, x: Tensor) -> Tensor:
        out = torch.sparse.mm(self.weight, x.reshape(-1, x.shape[-1]).t()).t()
        return out if self.bias is None else out + self.bias


class CSRConv2d(_Im2col):
    """A Conv2d as CSR (O, C·kh·kw) × im2col columns."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv)
        self.weight = conv.weight.detach().reshape(conv.out_channels, -1).to_sparse_csr()

    def forward(self, x: Tensor) -> Tensor:
        cols = self.columns(x)  # (B, CKK, L)
        b, ckk, length = cols.shape
        flat = cols.transpose(0, 1).reshape(ckk, b * length)
        out = torch.sparse.mm(self.weight, flat).reshape(-1, b, length).transpose(0, 1)
        return self.fold(out, x)


def _condense(weight: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """(units, k) values and input indices of a constant fan-in mask."""
    rows = keep.reshape(keep.shape[0], -1)
    k = int(rows[0].sum())
    index = torch.sort(rows.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :k]
    values = weight.detach().reshape(rows.shape).gather(1, index)
    return values.contiguous(), index.contiguous()


class CondensedLinear(nn.Module):
    """Constant fan-in Linear: y[:, o] = Σ_j x[:, idx[o, j]] · v[o, j] + b[o]."""

    def __init__(self, layer: nn.Linear, keep: Tensor) -> None:
        super().__init__()
        self.values, self.index = _condense(layer.weight, keep)
        self.bias = None if layer.bias is None else layer.bias.detach()

    def forward(self, x: Tensor) -> Tensor:
        out = (x[:, self.index] * self.values).sum(-1)
        return out if self.bias is None else out + self.bias


class CondensedConv2d(_Im2col):
    """Constant fan-in Conv2d: each output channel gathers its k columns of the im2col."""

    def __init__(self, conv: nn.Conv2d, keep: Tensor) -> None:
        super().__init__(conv)
        self.values, self.index = _condense(conv.weight, keep)

    def forward(self, x: Tensor) -> Tensor:
        cols = self.columns(x)  # (B, CKK, L)
        out = torch.einsum("bokl,ok->bol", cols[:, self.index, :], self.values)
        return self.fold(out, x)


class SemiStructuredLinear(nn.Module):
    """fp16 Linear with a 2:4 semi-structured weight (CUDA)."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        self.weight = to_sparse_semi_structured(weight.detach().half().contiguous())
        self.bias = None if bias is None else bias.detach().half()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.reshape(-1, x.shape[-1]), self.weight, self.bias)


class SemiStructuredConv2d(_Im2col):
    """fp16 Conv2d as im2col (input channels last, the N:M order) × a 2:4 weight (CUDA)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv)
        w = conv.weight.detach().permute(0, 2, 3, 1).reshape(conv.out_channels, -1)
        self.inner = SemiStructuredLinear(w, None)
        self.bias = None if conv.bias is None else conv.bias.detach().half()

    def forward(self, x: Tensor) -> Tensor:
        cols = self.columns(x)  # (B, C·K, L), channel-major
        b, ckk, length = cols.shape
        kk = self.kernel[0] * self.kernel[1]
        cols = cols.reshape(b, ckk // kk, kk, length).transpose(1, 2).reshape(b, ckk, length)
        out = self.inner(cols.transpose(1, 2).reshape(b * length, ckk))
        return self.fold(out.reshape(b, length, -1).transpose(1, 2), x)


def _replace(model: nn.Module, build: Callable[[str, nn.Module], nn.Module | None]) -> int:
    """Swaps every Conv2d/Linear for which ``build`` returns a module; returns how many."""
    swapped = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Conv2d | nn.Linear):
            continue
        new = build(name, module)
        if new is None:
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
        swapped += 1
    return swapped


def sparse_model(model: nn.Module, mask: Mapping[str, Tensor], kind: str) -> tuple[nn.Module, int]:
    """A copy of the masked ``model`` whose layers run the ``kind`` kernel; (model, layers)."""
    names = {n.rpartition(".")[0]: n for n in prunable(model)}
    out = copy.deepcopy(model)
    apply_mask(out, mask)

    def build(name: str, module: nn.Module) -> nn.Module | None:
        keep = mask[names[name]]
        linear = isinstance(module, nn.Linear)
        if kind == "csr":
            return CSRLinear(module) if linear else CSRConv2d(module)
        if kind == "condensed":
            return CondensedLinear(module, keep) if linear else CondensedConv2d(module, keep)
        try:  # semi-structured: shapes the kernel refuses stay dense
            if linear:
                return SemiStructuredLinear(module.weight, module.bias)
            return SemiStructuredConv2d(module)
        except (RuntimeError, ValueError):
            return None

    with warnings.catch_warnings():  # "CSR support is in beta": known, and not the user's
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return out, _replace(out, build)
