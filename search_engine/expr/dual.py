"""Dual-number code generation for one loss tree: each primitive's value and derivative rule.

`expr.program` compiles a population's trees into one straight-line function; this module holds
what it emits per node (each row of the primitive table names its rule: `Primitive.derivative`;
this module imports nothing of the engine, so the table can). A node while compiling is a `Sym`:
the generated variable holding its value and its derivative with respect to f, which is decided
while compiling to be a structural zero (None), a constant (a float) or a tensor variable. `Code`
collects the generated lines and the 0-d constants they read. The rules follow PyTorch autograd's
conventions at the edges (see `expr.program`'s module doc for each one).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

#: A derivative while compiling: None (structural zero), a float (the same everywhere) or the
#: name of a tensor variable in the generated code.
Deriv = str | float | None


@dataclass(frozen=True)
class Sym:
    """A node while compiling: the variable holding its value and its derivative with respect to f.

    `absolute` marks a value computed by torch.abs, which a protected log / sqrt need not take again.
    """

    value: str
    deriv: Deriv
    absolute: bool = False


# ------------------------------------------------------------------ the code being generated


class Code:
    """Lines of the generated function and the constants it reads (0-d tensors, one per value).

    `protect_eps` is the clamp of the protected log and sqrt (`primitives.PROTECT_EPS`), where
    their derivative stops.
    """

    def __init__(self, need_deriv: bool, protect_eps: float) -> None:
        self.need_deriv = need_deriv
        self.protect_eps = protect_eps
        self.lines: list[str] = []
        self.constants: list[float | tuple[Hashable, list[float] | None]] = []
        self._names: dict = {}
        self._count = 0
        self.leaks: list[str] = []  # this member's sign zeros, added to its derivative at the end

    def let(self, expr: str) -> str:
        """A new variable holding `expr`."""
        name = f"t{self._count}"
        self._count += 1
        self.lines.append(f"{name} = {expr}")
        return name

    def const(self, value: float) -> str:
        """The variable of a numeric constant (a 0-d tensor of the inputs' dtype)."""
        return self._constant(("number", float(value).hex()), float(value))

    def subtree(self, node: Hashable, weights: list[float] | None) -> str:
        """The variable of a constant subtree's value (`node`, a tree), computed once per dtype as
        compile_tree does."""
        key = ("tree", node, None if weights is None else tuple(float(w).hex() for w in weights))
        return self._constant(key, (node, weights))

    def _constant(self, key, spec) -> str:
        # Keyed by exact bits: -0.0 must not find 0.0, and a NaN must find itself.
        if key not in self._names:
            self._names[key] = f"c{len(self.constants)}"
            self.constants.append(spec)
        return self._names[key]

    # derivative arithmetic: floats are folded while compiling; at most one op otherwise

    def tensor(self, d: float | str) -> str:
        """A derivative as something a torch op takes: a float becomes a constant."""
        return self.const(d) if isinstance(d, float) else d

    def scaled(self, d: Deriv, factor: str) -> Deriv:
        """d * factor, factor a tensor variable (a local derivative)."""
        if d is None:
            return None
        if d == 1.0:  # f's own derivative: nothing to multiply
            return factor
        return self.let(f"torch.mul({factor}, {self.tensor(d)})")

    def times(self, d: Deriv, w: float) -> Deriv:
        """d * w for a fixed number w (an edge weight)."""
        if d is None:
            return None
        if isinstance(d, float):
            return d * w
        return self.let(f"torch.mul({d}, {self.const(w)})")

    def plus(self, a: Deriv, b: Deriv) -> Deriv:
        """a + b."""
        if a is None or b is None:
            return b if a is None else a
        if isinstance(a, float) and isinstance(b, float):
            return a + b
        return self.let(f"torch.add({self.tensor(a)}, {self.tensor(b)})")

    def minus(self, a: Deriv, b: Deriv) -> Deriv:
        """a - b."""
        if b is None:
            return a
        if a is None:
            return -b if isinstance(b, float) else self.let(f"torch.neg({b})")
        if isinstance(a, float) and isinstance(b, float):
            return a - b
        return self.let(f"torch.sub({self.tensor(a)}, {self.tensor(b)})")


# ------------------------------------------------------------------ rules


def add_rule(code: Code, a: Sym, b: Sym) -> Sym:
    return Sym(code.let(f"torch.add({a.value}, {b.value})"), code.plus(a.deriv, b.deriv))


def sub_rule(code: Code, a: Sym, b: Sym) -> Sym:
    return Sym(code.let(f"torch.sub({a.value}, {b.value})"), code.minus(a.deriv, b.deriv))


def mul_rule(code: Code, a: Sym, b: Sym) -> Sym:
    """d(a b) = a' b + a b' (autograd: grad * other for each input)."""
    value = code.let(f"torch.mul({a.value}, {b.value})")
    if isinstance(a.deriv, str) and isinstance(b.deriv, str):  # two ops instead of three
        return Sym(value, code.let(f"torch.addcmul(torch.mul({a.deriv}, {b.value}), {a.value}, {b.deriv})"))
    return Sym(value, code.plus(code.scaled(a.deriv, b.value), code.scaled(b.deriv, a.value)))


def div_rule(code: Code, a: Sym, b: Sym) -> Sym:
    """a / hypot(1, b); autograd: grad_a = g / h, grad_b = -g * ((a / h) / h) * (b / h)."""
    h = code.let(f"torch.hypot({code.const(1.0)}, {b.value})")  # the values of hypot(ones_like(b), b)
    value = code.let(f"torch.div({a.value}, {h})")
    if a.deriv is None:
        from_a = None
    elif a.deriv == 1.0:
        from_a = code.let(f"torch.reciprocal({h})")
    else:
        from_a = code.let(f"torch.div({code.tensor(a.deriv)}, {h})")
    if b.deriv is None:
        return Sym(value, from_a)
    slope = code.let(f"torch.mul(torch.div({value}, {h}), torch.div({b.value}, {h}))")  # -d(value)/db
    if isinstance(from_a, str) and isinstance(b.deriv, str):
        return Sym(value, code.let(f"torch.addcmul({from_a}, {slope}, {b.deriv}, value=-1)"))
    return Sym(value, code.minus(from_a, code.scaled(b.deriv, slope)))


def _extremum(code: Code, a: Sym, b: Sym, fn: str, loses: str) -> Sym:
    """min / max; autograd: where(a == b, g / 2, g), then 0 on the input that lost (NaN: both pass)."""
    value = code.let(f"torch.{fn}({a.value}, {b.value})")
    if a.deriv is None and b.deriv is None:
        return Sym(value, None)
    zero, half, one = code.const(0.0), code.const(0.5), code.const(1.0)
    share = code.let(f"torch.where(torch.eq({a.value}, {b.value}), {half}, {one})")

    def part(d: Deriv, x: str, other: str) -> Deriv:
        if d is None:
            return None
        # A multiplied 0/1 factor, not where(mask, d, 0): 0 * a non-finite d stays NaN, as in autograd.
        return code.scaled(d, code.let(f"torch.where(torch.{loses}({x}, {other}), {zero}, {share})"))

    return Sym(value, code.plus(part(a.deriv, a.value, b.value), part(b.deriv, b.value, a.value)))


def min_rule(code: Code, a: Sym, b: Sym) -> Sym:
    return _extremum(code, a, b, "minimum", "gt")


def max_rule(code: Code, a: Sym, b: Sym) -> Sym:
    return _extremum(code, a, b, "maximum", "lt")


def sign_rule(code: Code, a: Sym) -> Sym:
    """sign' = 0. Autograd sends zeros down, never scaled from above: so is the zero kept here."""
    if isinstance(a.deriv, str):  # (a float derivative times 0 is exactly 0: nothing to keep)
        code.leaks.append(code.let(f"torch.mul({a.deriv}, {code.const(0.0)})"))  # NaN where a' is not finite
    return Sym(code.let(f"torch.sign({a.value})"), None)


def square_rule(code: Code, a: Sym) -> Sym:
    value = code.let(f"torch.square({a.value})")
    if a.deriv is None:
        return Sym(value, None)
    if isinstance(a.deriv, float):
        return Sym(value, code.let(f"torch.mul({a.value}, {code.const(2.0 * a.deriv)})"))
    return Sym(value, code.let(f"torch.addcmul({code.const(0.0)}, {a.value}, {a.deriv}, value=2.0)"))  # 2 a a'


def abs_rule(code: Code, a: Sym) -> Sym:
    value = code.let(f"torch.abs({a.value})")
    if a.deriv is None:
        return Sym(value, None, absolute=True)
    return Sym(value, code.scaled(a.deriv, code.let(f"torch.sign({a.value})")), absolute=True)  # grad * sgn(a)


def tanh_rule(code: Code, a: Sym) -> Sym:
    value = code.let(f"torch.tanh({a.value})")
    if a.deriv is None:
        return Sym(value, None)
    # grad * (1 - value^2) with autograd's own kernel; a 0-d grad broadcasts.
    return Sym(value, code.let(f"tanh_backward({code.tensor(a.deriv)}, {value})"))


def _protected(code: Code, a: Sym, fn: str) -> tuple[str, str]:
    """(|a|, fn(clamp(|a|, eps))) as the protected log / sqrt compute them."""
    # abs(abs(x)) has the bits of abs(x): reuse it (sqrt(abs(...)) is a common shape).
    absolute = a.value if a.absolute else code.let(f"torch.abs({a.value})")
    return absolute, code.let(f"torch.{fn}(torch.clamp({absolute}, min=EPS))")


def log_rule(code: Code, a: Sym) -> Sym:
    """log(clamp(|a|, eps)); derivative 1/a (= sign(a) / |a|) where |a| > eps, else 0."""
    absolute, value = _protected(code, a, "log")
    if a.deriv is None:
        return Sym(value, None)
    local = code.let(f"torch.where(torch.gt({absolute}, {code.const(code.protect_eps)}), "
                     f"torch.reciprocal({a.value}), {code.const(0.0)})")
    return Sym(value, code.scaled(a.deriv, local))


def sqrt_rule(code: Code, a: Sym) -> Sym:
    """sqrt(clamp(|a|, eps)); derivative sign(a) / (2 value) where |a| > eps, else 0."""
    absolute, value = _protected(code, a, "sqrt")
    if a.deriv is None:
        return Sym(value, None)
    slope = f"torch.div({code.const(0.5)}, {value})"  # 0.5 / v = 1 / (2 v) exactly
    if not a.absolute:  # (where the mask passes, |a| > eps > 0, so an abs value's sign is 1)
        slope = f"torch.mul(torch.sign({a.value}), {slope})"
    passes = f"torch.gt({absolute}, {code.const(code.protect_eps)})"
    local = code.let(f"torch.where({passes}, {slope}, {code.const(0.0)})")
    return Sym(value, code.scaled(a.deriv, local))
