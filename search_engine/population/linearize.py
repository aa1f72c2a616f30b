"""A layer chain linearized at one shared point: batched VJPs and JVPs without vmap.

`population.local_search`'s one-step meta-gradient (see `first_step_objective` there) needs, for a population
of P candidates that all start from the same parameters theta0 and the same input batch x:

* the P parameter gradients J^T c_p for P different output cotangents c_p (a batched VJP), and
* the P output directions J v_p for P different parameter tangents v_p (a batched JVP),

where J is the Jacobian of the model's outputs with respect to its parameters at (theta0, x).
Everything the Jacobian depends on (each layer's input, the ReLU masks, the max-pool indices) is
computed once, by one forward pass of one model (`Linearization.at`). The P products then reuse
it with the shared weights theta0 as ordinary (P*B)-sized operations, and the per-member weight
gradients / tangents against a shared layer input become one matrix product each (the
population's weights laid side by side), as in `batched_models`' first layer. Measured on 2 CPU
cores (LeNet-5, P = 6), the VJP and the JVP each took 1.3-1.6x less time than `torch.func.vmap` over
`vjp` / `jvp` (most of it in the first layer's weight gradient, see `_COLS_BYTES`).

Supports the chains `population.networks.chain_layers` accepts (Linear, Conv2d, ReLU, MaxPool2d,
AdaptiveAvgPool2d(1), Flatten, Identity, inactive Dropout), with autograd's derivative
conventions: ReLU passes gradient where its output is positive, max-pooling routes it to the
index autograd would pick. Results equal `torch.func.vjp` / `jvp` to float rounding (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from search_engine.population.networks import Params, _im2col, _out_side, chain_layers

# A convolution's weight gradients are one matrix product against its unfolded input when that
# fits in this many bytes (on 2 CPU cores 2-3x faster than the library's weight gradient for
# LeNet-5's first layer, whose single input channel it handles poorly); otherwise the library's.
_COLS_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class _Step:
    """One layer of the recorded forward pass: the module, its parameter prefix and what its derivative needs."""

    prefix: str
    module: nn.Module
    input: Tensor  # the layer's input (B, ...)
    saved: Tensor | None = None  # ReLU: mask of positive outputs; MaxPool2d: argmax indices; Conv2d: unfolded input
    # MaxPool2d right after a ReLU (one step for both): which pooled outputs are positive. The ReLU's
    # derivative is then applied on the pooled side, a quarter of the size for 2x2 pooling.
    relu: Tensor | None = None


class Linearization:
    """The recorded forward pass of a layer chain at (theta0, x); `vjp` and `jvp` for P members at once."""

    def __init__(self, steps: list[_Step], params: Params, output: Tensor):
        self.steps = steps
        self.params = params  # theta0, by the model's own names
        self.output = output  # (B, n_out)

    @classmethod
    @torch.no_grad()
    def at(cls, model: nn.Module, params: Params, x: Tensor) -> Linearization:
        """Run `model`'s chain on x (B, ...) with `params`, recording every layer."""
        layers = chain_layers(model)
        if layers is None:
            raise ValueError(f"{type(model).__name__} is not a supported layer chain")
        steps, a, i = [], x, 0
        while i < len(layers):
            prefix, m = layers[i]
            if isinstance(m, nn.ReLU) and i + 1 < len(layers) and isinstance(layers[i + 1][1], nn.MaxPool2d):
                prefix, m = layers[i + 1]
                pool, out = _forward(prefix, m, params, F.relu(a))
                step, a, i = _Step(prefix, m, a, pool.saved, relu=out > 0), out, i + 2
            else:
                step, a = _forward(prefix, m, params, a)
                i += 1
            steps.append(step)
        return cls(steps, params, a)

    @torch.no_grad()
    def vjp(self, cotangents: Tensor) -> Params:
        """J^T c_p for each member: cotangents (P, B, n_out) -> gradients by name, each (P, *param.shape)."""
        grads: Params = {}
        first = _first_parametric(self.steps)
        d = cotangents
        for i in range(len(self.steps) - 1, first - 1, -1):
            rows = i > 0 and _unfolded(self.steps[i - 1])
            d = _backward(self.steps[i], self.params, d, grads, need_input=i > first, rows=rows)
        return grads

    @torch.no_grad()
    def jvp(self, tangents: Params) -> Tensor:
        """J v_p for each member: tangents by name, each (P, *param.shape) -> output directions (P, B, n_out)."""
        t = None  # the input's tangent is zero
        for i, step in enumerate(self.steps):
            pooled = i + 1 < len(self.steps) and isinstance(self.steps[i + 1].module, nn.MaxPool2d)
            t = _tangent(step, self.params, tangents, t, pooled)
        return t


def _unfolded(step: _Step) -> bool:
    """A convolution whose unfolded input was kept (its weight gradients read cotangents as rows)."""
    return isinstance(step.module, nn.Conv2d) and step.saved is not None


def _first_parametric(steps: list[_Step]) -> int:
    """Index of the first Linear / Conv2d layer (no gradient flows below it)."""
    return next(i for i, s in enumerate(steps) if isinstance(s.module, (nn.Linear, nn.Conv2d)))


# ------------------------------------------------------------------ forward


def _forward(prefix: str, m: nn.Module, params: Params, a: Tensor) -> tuple[_Step, Tensor]:
    """One layer of the shared forward pass and its record."""
    if isinstance(m, nn.Linear):
        return _Step(prefix, m, a), F.linear(a, params[prefix + "weight"], params.get(prefix + "bias"))
    if isinstance(m, nn.Conv2d):
        w, b = params[prefix + "weight"], params.get(prefix + "bias")
        out = F.conv2d(a, w, b, m.stride, m.padding)
        cols = _im2col(a, m)[0] if out[:, 0].numel() * w[0].numel() * a.element_size() <= _COLS_BYTES else None
        return _Step(prefix, m, a, cols), out  # cols: (B*H'*W', C_in*kh*kw)
    if isinstance(m, nn.ReLU):
        out = F.relu(a)
        return _Step(prefix, m, a, out > 0), out
    if isinstance(m, nn.MaxPool2d):
        out, idx = F.max_pool2d(a, m.kernel_size, m.stride, m.padding, return_indices=True)
        return _Step(prefix, m, a, idx), out
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _Step(prefix, m, a), a.mean(dim=(-2, -1), keepdim=True)
    if isinstance(m, nn.Flatten):
        return _Step(prefix, m, a), a.flatten(1)
    return _Step(prefix, m, a), a  # nn.Identity, inactive dropout


# ------------------------------------------------------------------ the batched VJP


def _backward(step: _Step, params: Params, d: Tensor, grads: Params, need_input: bool, rows: bool) -> Tensor | None:
    """Pull the members' output cotangents d (P, B, ...) through one layer; parameter gradients go to `grads`.

    `rows`: the layer below is an unfolded convolution, so a max-pool lays its input cotangents
    out as that convolution's rows (B, H, W, P, C) in memory, and the weight gradient needs no copy.
    """
    m, a = step.module, step.input
    if isinstance(m, nn.Linear):
        return _linear_backward(step, params, d, grads, need_input)
    if isinstance(m, nn.Conv2d):
        return _conv_backward(step, params, d, grads, need_input)
    if isinstance(m, nn.ReLU):
        return d * step.saved
    if isinstance(m, nn.MaxPool2d):
        return _pool_backward(step, d, rows)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return (d / (a.shape[-2] * a.shape[-1])).expand(-1, *a.shape)
    if isinstance(m, nn.Flatten):
        return d.reshape(len(d), *a.shape)
    return d


def _pool_backward(step: _Step, d: Tensor, rows: bool) -> Tensor:
    """Max-pool (after a ReLU: ReLU and max-pool): each cotangent goes to the index autograd picks."""
    a = step.input
    p, b, c = d.shape[:3]
    if step.relu is not None:
        d = d * step.relu
    if rows:
        out = d.new_zeros(b, *a.shape[-2:], p, c).permute(3, 0, 4, 1, 2)  # (P, B, C, H, W) view
    else:
        out = d.new_zeros(p, *a.shape)
    idx = step.saved.flatten(2).expand(p, -1, -1, -1)  # (P, B, C, h*w)
    out.flatten(3).scatter_add_(3, idx, d.flatten(3))
    return out


def _linear_backward(step: _Step, params: Params, d: Tensor, grads: Params, need_input: bool) -> Tensor | None:
    """Linear layer: per-member weight gradients against the shared input, input cotangents with the shared weight."""
    w = params[step.prefix + "weight"]  # (out, in)
    grads[step.prefix + "weight"] = torch.matmul(d.transpose(1, 2), step.input)  # (P, out, B) @ (B, in)
    if step.prefix + "bias" in params:
        grads[step.prefix + "bias"] = d.sum(dim=1)  # (P, out)
    return d @ w if need_input else None  # (P, B, in)


def _conv_backward(step: _Step, params: Params, d: Tensor, grads: Params, need_input: bool) -> Tensor | None:
    """Conv2d: the P weight gradients as one weight gradient with the members' filters side by side."""
    m, a = step.module, step.input
    w = params[step.prefix + "weight"]  # (C_out, C_in, kh, kw)
    p, b, c_out = d.shape[:3]
    opts = (list(m.stride), list(m.padding), [1, 1], False, [0, 0], 1)
    if step.saved is not None:  # unfolded input: one product, rows (B*H'*W') against the members' channels
        rows = d.permute(1, 3, 4, 0, 2).reshape(-1, p * c_out)  # (B*H'*W', P*C_out)
        gw = rows.t() @ step.saved  # (P*C_out, C_in*kh*kw)
    else:
        side_by_side = d.transpose(0, 1).reshape(b, p * c_out, *d.shape[3:])  # (B, P*C_out, H', W')
        wide = w.new_empty(1).expand(p * c_out, *w.shape[1:])  # only its shape is read
        _, gw, _ = torch.ops.aten.convolution_backward(side_by_side, a, wide, None, *opts, [False, True, False])
    grads[step.prefix + "weight"] = gw.view(p, *w.shape)
    if step.prefix + "bias" in params:
        grads[step.prefix + "bias"] = d.sum(dim=(1, 3, 4))  # (P, C_out)
    if not need_input:
        return None
    shape = (p * b, *a.shape[1:])
    gi, _, _ = torch.ops.aten.convolution_backward(
        d.reshape(p * b, *d.shape[2:]), a.new_empty(1).expand(shape), w, None, *opts, [True, False, False])
    return gi.view(p, *a.shape)


# ------------------------------------------------------------------ the batched JVP


def _tangent(step: _Step, params: Params, tangents: Params, t: Tensor | None, pooled: bool) -> Tensor | None:
    """The members' output tangents of one layer, from their input tangents t (P, B, ...) or None (zero).

    `pooled`: a max-pool comes next, which reads its input with a gather whatever the memory layout.
    """
    m = step.module
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        return _parametric_tangent(step, params, tangents, t, pooled)
    if t is None:
        return None
    if isinstance(m, nn.ReLU):
        return t * step.saved
    if isinstance(m, nn.MaxPool2d):
        p = len(t)
        idx = step.saved.flatten(2).expand(p, -1, -1, -1)  # (P, B, C, h*w)
        out = t.flatten(3).gather(3, idx).view(p, *step.saved.shape)
        return out if step.relu is None else out * step.relu
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return t.mean(dim=(-2, -1), keepdim=True)
    if isinstance(m, nn.Flatten):
        return t.flatten(2)
    return t


def _parametric_tangent(step: _Step, params: Params, tangents: Params, t: Tensor | None, pooled: bool) -> Tensor:
    """d(layer(a; w)) = layer(da; w) + layer(a; dw): the second term for all members as one wide layer."""
    m, a, prefix = step.module, step.input, step.prefix
    w = params[prefix + "weight"]
    dw = tangents[prefix + "weight"]  # (P, *w.shape)
    db = tangents.get(prefix + "bias")  # (P, out) or None
    p, c_out = dw.shape[:2]
    if isinstance(m, nn.Linear):
        wide = F.linear(a, dw.flatten(0, 1), None if db is None else db.flatten())  # (B, P*out)
        out = wide.view(len(a), p, c_out).transpose(0, 1)  # (P, B, out)
        return out if t is None else out + t @ w.t()
    if pooled and step.saved is not None:  # one product with the unfolded input, read in place by the pool
        wide_w = dw.flatten(0, 1).flatten(1)  # (P*C_out, C_in*kh*kw)
        prod = step.saved @ wide_w.t() if db is None else torch.addmm(db.flatten(), step.saved, wide_w.t())
        h, w_out = _out_side(a.shape[-2], m, 0), _out_side(a.shape[-1], m, 1)
        out = prod.view(len(a), h, w_out, p, c_out).permute(3, 0, 4, 1, 2)  # (P, B, C_out, H', W') view
    else:
        wide = F.conv2d(a, dw.flatten(0, 1), None if db is None else db.flatten(), m.stride, m.padding)
        out = wide.view(len(a), p, c_out, *wide.shape[2:]).transpose(0, 1)  # (P, B, C_out, H', W')
    if t is None:
        return out
    # Channels-last input: measured 2x faster for this (P*B)-sized convolution on 2 CPU cores.
    inner = t.flatten(0, 1).contiguous(memory_format=torch.channels_last)
    return out + F.conv2d(inner, w, None, m.stride, m.padding).view(out.shape)

