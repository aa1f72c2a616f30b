"""Loss expression trees: text and JSON forms, SymPy canonical forms, LaTeX, torch compilation."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch

from search_engine.expr import primitives as P
from search_engine.expr.compile import compile_tree
from search_engine.expr.formula import to_latex
from search_engine.expr.symbolic import (
    SYMBOL_F,
    SYMBOL_Y,
    canonical_form,
    canonical_key,
    depends_on_prediction,
    to_simplified_latex,
    to_sympy,
)
from search_engine.expr.tree import (
    CROSS_ENTROPY,
    KNOWN_LOSSES,
    MAX_NESTING,
    MAX_TEXT_LENGTH,
    SQUARED_ERROR,
    ExpressionError,
    Node,
    Y,
    from_json,
    parse,
    to_json,
    to_prefix,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def random_tree(rng: random.Random, max_height: int) -> Node:
    """A 'grow' tree: at each level a terminal with probability 0.3 (always at max_height)."""
    if max_height == 0 or rng.random() < 0.3:
        return Node(rng.choice(P.TERMINALS))
    op = rng.choice(list(P.PRIMITIVES))
    return Node(op, tuple(random_tree(rng, max_height - 1) for _ in range(P.arity(op))))


def random_trees(seed: int, count: int, max_height: int) -> list[Node]:
    rng = random.Random(seed)
    return [random_tree(rng, max_height) for _ in range(count)]


def nested(op: str, depth: int, leaf: Node = Y) -> Node:
    """op(op(...op(leaf)...)) with `depth` unary calls."""
    node = leaf
    for _ in range(depth):
        node = Node(op, (node,))
    return node


# ---------------------------------------------------------------------------- prefix strings


def test_to_prefix_format():
    assert to_prefix(CROSS_ENTROPY) == "mul(-1, mul(y, log(f)))"
    assert to_prefix(SQUARED_ERROR) == "square(sub(y, f))"
    assert to_prefix(Y) == "y"


@pytest.mark.parametrize("seed", range(4))
def test_parse_inverts_to_prefix_on_random_trees(seed):
    for tree in random_trees(seed, 100, max_height=8):
        assert parse(to_prefix(tree)) == tree


def test_parse_tolerates_whitespace_and_plain_constants():
    assert parse("  mul( -1 ,\n\tmul(y,log( f )) )  ") == CROSS_ENTROPY
    assert parse("add(y, 1.0)") == Node("add", (Y, Node("1")))
    assert parse("-1") == Node("-1")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("", ["empty expression"]),
        ("   \n", ["empty expression"]),
        ("foo(y)", ["unknown symbol 'foo'", "allowed: add, sub", "y, f, 1, -1", "position 0"]),
        ("sqr(y)", ["unknown symbol 'sqr'", "did you mean 'sqrt'"]),
        ("add(y)", ["'add' takes 2 arguments, got 1"]),
        ("add(y, f, y)", ["'add' takes 2 arguments, got 3"]),
        ("abs()", ["'abs' takes 1 argument, got 0"]),
        ("add(y, f", ["unbalanced parentheses", "missing ')'", "position 3"]),
        ("add(y, log(f", ["unbalanced parentheses", "'(' at position 10"]),
        ("add(y, f))", ["unbalanced parentheses", "unexpected ')' at position 9"]),
        ("add(y, f) y", ["trailing text at position 10"]),
        ("y(f)", ["terminal 'y' takes no arguments", "position 1"]),
        ("1(y)", ["terminal '1' takes no arguments"]),
        ("add(y, 2)", ["only the constants 1 and -1 are allowed", "'2'", "position 7"]),
        ("mul(0.5, f)", ["only the constants 1 and -1 are allowed", "'0.5'"]),
        ("add(y, -f)", ["unexpected character '-' at position 7", "mul(-1"]),
        ("add(y; f)", ["unexpected character ';' at position 5"]),
        ("add y", ["expected '(' after 'add' at position 4"]),
        ("add", ["unexpected end of text", "'(' after 'add'"]),
        ("add(y f)", ["expected ',' or ')' at position 6"]),
        ("add(y, )", ["missing argument", "position 7"]),
        ("(y)", ["unexpected '(' at position 0"]),
        ("x" * (MAX_TEXT_LENGTH + 1), ["too long", str(MAX_TEXT_LENGTH)]),
    ],
)
def test_parse_errors_name_the_problem(text, fragments):
    with pytest.raises(ExpressionError) as info:
        parse(text)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


def test_parse_error_is_value_error_with_position():
    with pytest.raises(ValueError) as info:
        parse("add(y, 2)")
    assert isinstance(info.value, ExpressionError) and info.value.position == 7
    with pytest.raises(ExpressionError):
        parse(None)  # type: ignore[arg-type]


def test_parse_limits_nesting_without_blowing_the_stack():
    ok = nested("abs", MAX_NESTING)
    assert parse(to_prefix(ok)) == ok
    too_deep = "abs(" * (MAX_NESTING + 1) + "y" + ")" * (MAX_NESTING + 1)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse(too_deep)
    # Far past Python's recursion limit, still within the length limit: a clean error, no crash.
    with pytest.raises(ExpressionError, match="unexpected '\\(' at position 0"):
        parse("(" * 5000)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("abs(" * 2000)


# ---------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("seed", range(2))
def test_json_round_trips_through_text(seed):
    for tree in random_trees(seed + 10, 100, max_height=8):
        obj = json.loads(json.dumps(to_json(tree)))
        assert from_json(obj) == tree


def test_json_shape_and_empty_children_accepted():
    assert to_json(SQUARED_ERROR) == {
        "op": "square",
        "children": [{"op": "sub", "children": [{"op": "y"}, {"op": "f"}]}],
    }
    assert from_json({"op": "add", "children": [{"op": "y", "children": []}, {"op": "1"}]}) == Node(
        "add", (Y, Node("1"))
    )


@pytest.mark.parametrize(
    ("obj", "fragments"),
    [
        ([], ["at $:", "expected an object"]),
        ({"op": 3}, ["at $:", "'op' must be a string"]),
        ({"children": []}, ["at $:", "'op' must be a string"]),
        ({"op": "add", "children": [{"op": "y"}, {"op": "bogus"}]}, ["at $.children[1]:", "unknown symbol"]),
        ({"op": "add", "children": [{"op": "y"}]}, ["at $:", "'add' takes 2 arguments, got 1"]),
        ({"op": "abs", "children": [{"op": "y", "children": [{"op": "f"}]}]}, ["$.children[0]", "takes 0"]),
        ({"op": "abs", "children": {"op": "y"}}, ["'children' must be a list"]),
        ({"op": "y", "colour": "red"}, ["unexpected key(s) 'colour'"]),
        ({"op": "abs", "children": ["y"]}, ["at $.children[0]:", "expected an object"]),
    ],
)
def test_from_json_errors_name_the_path(obj, fragments):
    with pytest.raises(ExpressionError) as info:
        from_json(obj)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_from_json_limits_nesting():
    obj: dict = {"op": "y"}
    for _ in range(MAX_NESTING + 5):
        obj = {"op": "abs", "children": [obj]}
    with pytest.raises(ExpressionError, match="nested too deeply"):
        from_json(obj)


# ---------------------------------------------------------------------------- SymPy


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("add(y, f)", "add(f, y)"),
        ("sub(f, f)", "sub(y, y)"),
        ("mul(1, f)", "f"),
        ("add(f, f)", "mul(f, add(1, 1))"),
        ("mul(y, add(y, f))", "add(square(y), mul(f, y))"),
        ("square(sub(y, f))", "mul(sub(f, y), sub(f, y))"),
        ("max(y, f)", "max(f, max(y, f))"),
        ("min(y, min(f, 1))", "min(min(1, y), f)"),
        ("abs(sub(y, f))", "abs(sub(f, y))"),
        ("log(mul(-1, f))", "log(f)"),
        ("sign(mul(-1, f))", "mul(-1, sign(f))"),
        ("max(1, -1)", "1"),
    ],
)
def test_canonical_key_identifies_equivalent_trees(left, right):
    assert canonical_key(parse(left)) == canonical_key(parse(right))


@pytest.mark.parametrize(
    ("left", "right"),
    [("add(y, f)", "sub(y, f)"), ("max(y, f)", "min(y, f)"), ("log(f)", "sqrt(f)"), ("abs(f)", "f")],
)
def test_canonical_key_separates_different_trees(left, right):
    assert canonical_key(parse(left)) != canonical_key(parse(right))


def test_depends_on_prediction():
    assert depends_on_prediction(CROSS_ENTROPY) and depends_on_prediction(SQUARED_ERROR)
    assert not depends_on_prediction(parse("sub(f, f)"))
    assert not depends_on_prediction(parse("mul(y, log(sub(add(f, y), f)))"))
    assert not depends_on_prediction(parse("add(y, 1)"))
    assert depends_on_prediction(parse("mul(y, f)"))


def test_to_sympy_uses_the_shared_symbols():
    assert to_sympy(SQUARED_ERROR) == (SYMBOL_Y - SYMBOL_F) ** 2
    assert to_sympy(parse("add(1, -1)")) == 0
    assert canonical_form(SQUARED_ERROR) == sympy.expand((SYMBOL_Y - SYMBOL_F) ** 2)


def test_canonical_key_is_stable_across_processes():
    # Keys are stored (hall of fame, caches), so they must not depend on Python's hash seed.
    trees = random_trees(42, 30, max_height=6)
    script = (
        "import sys; from search_engine.expr.tree import parse; from search_engine.expr.symbolic import canonical_key\n"
        "for line in sys.stdin.read().splitlines(): print(canonical_key(parse(line)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        input="\n".join(to_prefix(t) for t in trees),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        check=True,
        timeout=120,
    )
    assert done.stdout.splitlines() == [canonical_key(t) for t in trees]


# ---------------------------------------------------------------------------- LaTeX


def test_to_latex_mirrors_the_tree():
    assert to_latex(SQUARED_ERROR) == r"\left(y - f(x)\right)^{2}"
    assert to_latex(CROSS_ENTROPY) == r"\left(-1\right) \cdot y \cdot \log\left|f(x)\right|"


@pytest.mark.parametrize("prefix, latex", [
    # brackets exactly where precedence needs them
    ("mul(add(y, f), f)", r"\left(y + f(x)\right) \cdot f(x)"),
    ("mul(y, sub(f, y))", r"y \cdot \left(f(x) - y\right)"),
    ("sub(y, sub(f, 1))", r"y - \left(f(x) - 1\right)"),
    ("sub(sub(y, f), 1)", r"y - f(x) - 1"),
    ("sub(y, add(f, 1))", r"y - \left(f(x) + 1\right)"),
    ("sub(y, mul(f, y))", r"y - f(x) \cdot y"),
    ("sub(y, -1)", r"y - \left(-1\right)"),
    ("add(y, add(f, -1))", r"y + f(x) + -1"),
    # powers: a bare base only for one symbol, number or |...| group
    ("square(f)", r"f(x)^{2}"),
    ("square(abs(f))", r"\left|f(x)\right|^{2}"),
    ("square(-1)", r"\left(-1\right)^{2}"),
    ("square(square(y))", r"\left(y^{2}\right)^{2}"),
    ("square(mul(y, f))", r"\left(y \cdot f(x)\right)^{2}"),
    ("square(log(f))", r"\left(\log\left|f(x)\right|\right)^{2}"),
    ("square(add(abs(f), abs(y)))", r"\left(\left|f(x)\right| + \left|y\right|\right)^{2}"),
    ("div(y, sub(f, 1))", r"\frac{y}{\sqrt{1 + \left(f(x) - 1\right)^{2}}}"),
    ("square(div(y, f))", r"\left(\frac{y}{\sqrt{1 + f(x)^{2}}}\right)^{2}"),
])
def test_to_latex_brackets_only_where_needed(prefix, latex):
    assert to_latex(parse(prefix)) == latex


@pytest.mark.parametrize("seed", range(2))
def test_latex_nonempty_for_random_trees(seed):
    for tree in random_trees(seed + 20, 30, max_height=6):
        assert to_latex(tree).strip()
        assert to_simplified_latex(tree).strip()


def test_simplified_latex_writes_prediction_and_epsilon():
    latex = to_simplified_latex(CROSS_ENTROPY)  # log's clamp max(|f|, eps) is written |f|, as to_latex does
    assert latex == r"- y \log{\left(\left|{f(x)}\right| \right)}"
    clamp = to_simplified_latex(parse("square(sqrt(f))"))  # the clamp is the value: written out
    assert r"\epsilon" in clamp and "10^{-7}" not in clamp
    assert to_simplified_latex(parse("sub(f, f)")) == "0"


# ---------------------------------------------------------------------------- compilation


def _numpy_function(expr: sympy.Expr):
    """A float64 numpy function of (y, f) for a SymPy expression (lambdify is fine: no user text)."""
    return sympy.lambdify((SYMBOL_Y, SYMBOL_F), expr, modules="numpy")


def _compare(tree: Node, expr: sympy.Expr, y: np.ndarray, f: np.ndarray) -> None:
    """compile_tree(tree) agrees with `expr` evaluated numerically, where the reference is finite."""
    got = compile_tree(tree)(torch.from_numpy(y), torch.from_numpy(f)).numpy()
    with np.errstate(all="ignore"):
        want = np.broadcast_to(np.asarray(_numpy_function(expr)(y, f), dtype=np.float64), y.shape)
    finite = np.isfinite(want) & (np.abs(want) < 1e12)
    assert got.shape == y.shape
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-7, atol=1e-9, err_msg=to_prefix(tree))


@pytest.mark.parametrize("seed", range(3))
def test_compile_matches_sympy_on_random_trees(seed):
    gen = np.random.default_rng(seed)
    y = gen.uniform(-3, 3, size=64)
    f = gen.uniform(-3, 3, size=64)
    for tree in random_trees(seed + 30, 40, max_height=5):
        _compare(tree, to_sympy(tree), y, f)
        _compare(tree, canonical_form(tree), y, f)


def test_compile_known_losses():
    y = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    f = torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(compile_tree(SQUARED_ERROR)(y, f), (y - f) ** 2)
    torch.testing.assert_close(compile_tree(CROSS_ENTROPY)(y, f), -y * torch.log(f))
    assert set(KNOWN_LOSSES) == {"cross_entropy", "squared_error"}


@pytest.mark.parametrize("text", ["1", "-1", "tanh(1)", "log(add(1, 1))", "sqrt(sign(-1))"])
def test_compile_constant_tree_has_broadcast_shape(text):
    tree = parse(text)
    y = torch.zeros(4, 1, dtype=torch.float64)
    f = torch.zeros(1, 3, dtype=torch.float64)
    out = compile_tree(tree)(y, f)
    assert out.shape == (4, 3) and out.dtype == torch.float64
    expected = float(sympy.N(to_sympy(tree)))
    torch.testing.assert_close(out, torch.full((4, 3), expected, dtype=torch.float64))


def test_compile_broadcasts_mixed_shapes_and_keeps_dtype():
    tree = parse("add(y, mul(f, -1))")
    y = torch.arange(3, dtype=torch.float32).reshape(3, 1)
    f = torch.ones(2, dtype=torch.float32)
    out = compile_tree(tree)(y, f)
    assert out.shape == (3, 2) and out.dtype == torch.float32
    torch.testing.assert_close(out, y - f)


def test_compile_gradients_flow_to_prediction():
    f = torch.tensor([0.3, 0.6], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0], dtype=torch.float64)
    compile_tree(parse("square(sub(y, f))"))(y, f).sum().backward()
    torch.testing.assert_close(f.grad, 2 * (f.detach() - y))
