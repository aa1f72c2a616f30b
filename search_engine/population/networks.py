"""A population of P copies of one task model, run as one program on stacked parameters.

`population_model(model)` returns a callable ``(params, buffers, x) -> outputs (P, B, n_out)``
where `params`/`buffers` map the model's own names to tensors stacked along a new first
dimension P, and `x` (B, ...) is one input batch shared by the whole population.

Two formulations:

* `LayerChain` - for models that are a chain of Linear / Conv2d / ReLU / MaxPool2d / Flatten /
  AdaptiveAvgPool2d(1) layers (logistic, mlp, lenet5, allcnnc). The first parametric layer
  sees the *shared* input, so the population's weights are the columns of one matrix: a linear
  layer is one wide product, a convolution unfolds the shared input once (im2col) and runs all
  P filter banks as one matrix product, channels-last (on this CPU several times faster than
  P separate convolutions of a 1-channel input). Later linear layers are one batched matrix
  product. Later convolutions (different input per member) run as one grouped convolution on
  CUDA; on the CPU, where grouped and vmapped convolutions measured slower, as one oneDNN
  convolution per member on a contiguous (P, B, ...) copy. A ReLU directly before a max-pool
  is applied after it instead: the two commute exactly (same values, same gradients, same tie
  rule), and the ReLU runs on a 4x smaller tensor.
* `VmapModel` - any other model (resnet18, wideresnet, ...): `torch.func.vmap` over
  `functional_call`. BatchNorm treatment: every member has its own running statistics,
  stacked like the parameters and passed as vmapped buffers; in training mode each member
  normalizes with its own batch statistics and updates its own running mean/var in place,
  exactly as a separately trained model would, and evaluation uses those statistics. So
  BatchNorm models keep the sequential semantics (no `replace_all_batch_norm_modules_`).
  Dropout, if enabled, draws independent masks per member (`randomness="different"`), which
  cannot reproduce the sequential path's masks; the built-in models have no active dropout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

Params = dict[str, Tensor]
PopulationModel = Callable[[Params, Params, Tensor], Tensor]


# ------------------------------------------------------------------ the layer chain


@dataclass(frozen=True)
class _Act:
    """An activation: shared by all members (B, ...), or per member in layout "bp" (B, P, ...) or "pb" (P, B, ...).

    "bp" values may have channels-last memory; only views that are valid for any strides are used.
    """

    value: Tensor
    layout: str  # "shared" | "bp" | "pb" | "cols" (a shared input already unfolded for its convolution)
    spatial: tuple[int, int, int] = (0, 0, 0)  # "cols" only: (B, H', W') of the convolution's output


def _pb(a: _Act, p: int) -> Tensor:
    """The activation as a contiguous (P, B, ...) tensor."""
    if a.layout == "pb":
        return a.value
    if a.layout == "bp":
        return a.value.transpose(0, 1).contiguous()
    return a.value.unsqueeze(0).expand(p, *a.value.shape).contiguous()


def _linear(a: _Act, w: Tensor, b: Tensor | None, p: int) -> _Act:
    """Linear layer; w (P, out, in), b (P, out)."""
    out_f = w.shape[1]
    if a.layout == "shared":  # one wide product: (B, in) @ (in, P*out)
        bias = None if b is None else b.reshape(p * out_f)
        y = F.linear(a.value, w.reshape(p * out_f, -1), bias)  # (B, P*out)
        # A contiguous (P, B, out) copy: elementwise ops and their backward then see matching strides.
        return _Act(y.view(len(y), p, out_f).transpose(0, 1).contiguous(), "pb")
    x = a.value.transpose(0, 1) if a.layout == "bp" else a.value  # (P, B, in)
    if b is None:
        return _Act(torch.bmm(x, w.transpose(1, 2)), "pb")
    return _Act(torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)), "pb")  # (P, B, out)


def _im2col(x: Tensor, conv: nn.Conv2d) -> tuple[Tensor, int, int]:
    """Patches of x (B, C, H, W) as rows (B*H'*W', C*kh*kw) in the weight's (C, kh, kw) order, and H', W'."""
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph))
    patches = x.unfold(2, kh, sh).unfold(3, kw, sw)  # (B, C, H', W', kh, kw)
    b, c, h, w = patches.shape[:4]
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(b * h * w, c * kh * kw), h, w


def _shared_cols(x: Tensor, conv: nn.Conv2d) -> _Act:
    """A shared input unfolded for `conv`, with a column of ones for the bias: computed once per batch."""
    cols, h, w = _im2col(x, conv)  # (B*H'*W', C*kh*kw)
    if conv.bias is not None:
        cols = F.pad(cols, (0, 1), value=1.0)
    return _Act(cols, "cols", (len(x), h, w))


def _conv_shared(a: _Act, w: Tensor, b: Tensor | None) -> Tensor:
    """The population's convolutions of one shared, unfolded input as one matrix product.  # (B, P*C_out, H', W')

    The P filter banks are the columns of one matrix, the biases one more row of it (against
    the column of ones). The result has channels-last memory.
    """
    p, c_out = w.shape[:2]
    weight = w.reshape(p * c_out, -1)  # (P*C_out, C*kh*kw)
    if b is not None:
        weight = torch.cat([weight, b.reshape(p * c_out, 1)], dim=1)
    y = a.value @ weight.t()  # (B*H'*W', P*C_out)
    batch, h, wd = a.spatial
    return y.view(batch, h, wd, p * c_out).permute(0, 3, 1, 2)


def _conv(a: _Act, conv: nn.Conv2d, w: Tensor, b: Tensor | None, p: int) -> _Act:
    """Conv2d; w (P, C_out, C_in, k, k), b (P, C_out).

    Shared input: one matrix product (`_conv_shared`). Per-member input: on the CPU one
    convolution per member on a contiguous (P, B, ...) copy (measured faster there than a
    grouped convolution); elsewhere one grouped convolution over (B, P*C, H, W).
    """
    opts = {"stride": conv.stride, "padding": conv.padding}
    if a.layout in ("shared", "cols"):
        y = _conv_shared(a if a.layout == "cols" else _shared_cols(a.value, conv), w, b)
        return _Act(y.unflatten(1, (p, w.shape[1])), "bp")
    if a.value.device.type == "cpu":
        x = _pb(a, p)  # (P, B, C, H, W)
        bs = [None] * p if b is None else b.unbind(0)
        return _Act(torch.stack([F.conv2d(xi, wi, bi, **opts) for xi, wi, bi in zip(x, w, bs)]), "pb")
    x = a.value if a.layout == "bp" else a.value.transpose(0, 1)  # (B, P, C, H, W)
    bias = None if b is None else b.reshape(-1)
    y = F.conv2d(x.flatten(1, 2), w.flatten(0, 1), bias, groups=p, **opts)  # (B, P*C_out, H', W')
    return _Act(y.unflatten(1, (p, w.shape[1])), "bp")


def _spatial(a: _Act, fn: Callable[[Tensor], Tensor]) -> _Act:
    """Apply a per-channel spatial op (pooling) to an (N, C, H, W) view of any layout."""
    v = a.value
    if a.layout == "shared":
        return _Act(fn(v), "shared")
    if a.layout == "bp":  # (B, P*C, H, W): a view even with channels-last memory
        return _Act(fn(v.flatten(1, 2)).unflatten(1, v.shape[1:3]), "bp")
    return _Act(fn(v.flatten(0, 1)).unflatten(0, v.shape[:2]), "pb")


def _flatten(a: _Act) -> _Act:
    """nn.Flatten(): keep the batch (and member) dims, flatten the rest."""
    return _Act(a.value.flatten(1 if a.layout == "shared" else 2), a.layout)


def _is_relu_then_pool(layers: list[tuple[str, nn.Module]], i: int) -> bool:
    """A ReLU followed by a max-pool: run as pool-then-ReLU (they commute exactly)."""
    return isinstance(layers[i][1], nn.ReLU) and i + 1 < len(layers) and isinstance(layers[i + 1][1], nn.MaxPool2d)


def _pool_fn(m: nn.MaxPool2d | nn.AdaptiveAvgPool2d) -> Callable[[Tensor], Tensor]:
    """The functional form of a supported pooling layer."""
    if isinstance(m, nn.MaxPool2d):
        return lambda v: F.max_pool2d(v, m.kernel_size, m.stride, m.padding)
    return lambda v: F.adaptive_avg_pool2d(v, m.output_size)


def _is_parametric(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.Conv2d))


class LayerChain:
    """A chain of supported layers, evaluated on the whole population at once (see module doc).

    On the CPU the first stage (the first parametric layer on the shared input and the layers up
    to the next parametric one) runs for groups of members whose full-resolution output stays
    under `stage_bytes`: allocations above glibc's largest mmap threshold (32 MiB) are fresh
    pages each step, and page faults then cost more than the arithmetic.
    """

    def __init__(self, layers: list[tuple[str, nn.Module]], stage_bytes: int = 20 * 1024**2):
        self.layers = layers  # (parameter-name prefix, module)
        self.stage_bytes = stage_bytes
        parametric = [i for i, (_, m) in enumerate(layers) if _is_parametric(m)]
        self._stage_end = parametric[1] if len(parametric) > 1 else len(layers)

    def __call__(self, params: Params, buffers: Params, x: Tensor) -> Tensor:
        p = len(next(iter(params.values())))
        group = self._group_size(x, p)
        if group >= p:
            a = self._run(_Act(x, "shared"), params, 0, self._stage_end)
        else:  # only when the first parametric layer is a convolution
            first = next(i for i, (_, m) in enumerate(self.layers) if _is_parametric(m))
            cols = _shared_cols(self._run(_Act(x, "shared"), params, 0, first).value, self.layers[first][1])
            parts = [self._run(cols, _slice(params, i, i + group), first, self._stage_end)
                     for i in range(0, p, group)]
            a = _concat_members(parts, p)
        a = self._run(a, params, self._stage_end, len(self.layers))
        v = _pb(a, p) if a.layout == "shared" else a.value
        return v.transpose(0, 1) if a.layout == "bp" else v  # (P, B, n_out)

    def _group_size(self, x: Tensor, p: int) -> int:
        """Members per group in the first stage (all of them unless its output is large, on the CPU)."""
        first = next((m for _, m in self.layers if _is_parametric(m)), None)
        if x.device.type != "cpu" or not isinstance(first, nn.Conv2d) or x.dim() != 4:
            return p
        h, w = (_out_side(x.shape[-2], first, 0), _out_side(x.shape[-1], first, 1))
        per_member = len(x) * first.out_channels * h * w * x.element_size()  # the conv's output
        return max(1, min(p, self.stage_bytes // max(per_member, 1)))

    def _run(self, a: _Act, params: Params, start: int, end: int) -> _Act:
        """Layers start..end-1."""
        p = len(next(iter(params.values())))
        i = start
        while i < end:
            prefix, m = self.layers[i]
            if i + 1 < end and _is_relu_then_pool(self.layers, i):
                a = _spatial(a, _pool_fn(self.layers[i + 1][1]))
                a = _Act(F.relu(a.value), a.layout)
                i += 2
                continue
            a = self._apply(a, prefix, m, params, p)
            i += 1
        return a

    @staticmethod
    def _apply(a: _Act, prefix: str, m: nn.Module, params: Params, p: int) -> _Act:
        """One layer."""
        if isinstance(m, nn.Linear):
            return _linear(a, params[prefix + "weight"], params.get(prefix + "bias"), p)
        if isinstance(m, nn.Conv2d):
            return _conv(a, m, params[prefix + "weight"], params.get(prefix + "bias"), p)
        if isinstance(m, nn.ReLU):
            return _Act(F.relu(a.value), a.layout)
        if isinstance(m, (nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            return _spatial(a, _pool_fn(m))
        if isinstance(m, nn.Flatten):
            return _flatten(a)
        return a  # nn.Identity, inactive dropout


def _out_side(side: int, conv: nn.Conv2d, dim: int) -> int:
    """Output side of a convolution along spatial dim 0 (H) or 1 (W)."""
    return (side + 2 * conv.padding[dim] - conv.kernel_size[dim]) // conv.stride[dim] + 1


def _slice(params: Params, start: int, stop: int) -> Params:
    """Members start..stop-1 of stacked parameters (views)."""
    return {n: t[start:stop] for n, t in params.items()}


def _concat_members(parts: list[_Act], p: int) -> _Act:
    """Join per-group activations along the member axis."""
    if all(a.layout == "bp" for a in parts):
        return _Act(torch.cat([a.value for a in parts], dim=1), "bp")
    return _Act(torch.cat([_pb(a, len(a.value)) for a in parts], dim=0), "pb")


def _supported(m: nn.Module) -> bool:
    """Leaf layers `LayerChain` can run with exactly the module's semantics."""
    if isinstance(m, (nn.Linear, nn.ReLU, nn.Identity)):
        return not isinstance(m, nn.ReLU) or not m.inplace
    if isinstance(m, nn.Conv2d):
        return m.groups == 1 and m.dilation == (1, 1) and m.padding_mode == "zeros" and not isinstance(m.padding, str)
    if isinstance(m, nn.MaxPool2d):
        return m.dilation == 1 and not m.ceil_mode and not m.return_indices
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return m.output_size in (1, (1, 1))
    if isinstance(m, nn.Flatten):
        return m.start_dim == 1 and m.end_dim == -1
    return isinstance(m, nn.Dropout) and m.p == 0.0


def _chain_children(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The (name, child) list a model's forward applies in order, if it is known to be a chain."""
    from search_engine.tasks.networks import AllCNNC, LeNet5

    if type(model) is nn.Sequential:
        return list(model.named_children())
    if type(model) is LeNet5:
        return [("features", model.features), ("classifier", model.classifier)]
    if type(model) is AllCNNC:
        return [("net", model.net)]
    return None


def chain_obstacle(model: nn.Module, prefix: str = "") -> str | None:
    """Why `model` is not a chain `LayerChain` runs: its first layer that is not one of the supported
    kinds (Linear, Conv2d, ReLU, MaxPool2d, AdaptiveAvgPool2d(1), Flatten, Identity, in nn.Sequential),
    as "layer PATH (TYPE)"; None for a supported chain."""
    children = _chain_children(model)
    if children is None:
        return None if _supported(model) else f"layer {prefix.rstrip('.') or '(the model)'} ({type(model).__name__})"
    for name, child in children:
        found = chain_obstacle(child, f"{prefix}{name}.")
        if found:
            return found
    return None


def chain_layers(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]] | None:
    """The model as a flat list of (parameter prefix, leaf layer), or None if it is not a supported chain."""
    children = _chain_children(model)
    if children is None:
        return [(prefix, model)] if _supported(model) else None
    out: list[tuple[str, nn.Module]] = []
    for name, child in children:
        sub = chain_layers(child, f"{prefix}{name}.")
        if sub is None:
            return None
        out += sub
    return out


# ------------------------------------------------------------------ the vmap fallback


class VmapModel:
    """`vmap(functional_call)` over stacked parameters and buffers (per-member BatchNorm statistics)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, params: Params, buffers: Params, x: Tensor) -> Tensor:
        def one(p: Params, b: Params, inputs: Tensor) -> Tensor:
            return functional_call(self.model, (p, b), (inputs,))

        return vmap(one, in_dims=(0, 0, None), randomness="different")(params, buffers, x)  # (P, B, n_out)


def population_model(model: nn.Module) -> PopulationModel:
    """The fastest exact formulation available for `model`: `LayerChain`, else `VmapModel`.

    The returned callable follows the template's training/eval mode (`model.train()` / `.eval()`).
    """
    layers = chain_layers(model)
    return LayerChain(layers) if layers else VmapModel(model)


def is_chain(model: nn.Module) -> bool:
    """True when `population_model` uses the dedicated layer-chain formulation (not vmap)."""
    return chain_layers(model) is not None
