"""Canonical forms that know the task (search_engine.expr.symbolic with a kind): for classification
y is one-hot and f a softmax output in (0, 1); for regression both are any reals."""

from __future__ import annotations

import math

import pytest
import sympy
import torch
from hypothesis import given
from hypothesis import strategies as st

from search_engine.expr import primitives as P
from search_engine.expr import symbolic
from search_engine.expr.compile import compile_tree
from search_engine.expr.symbolic import (
    SYMBOL_F,
    SYMBOL_SOFTMAX,
    SYMBOL_Y,
    canonical_key,
    depends_on_prediction,
    one_hot_forms,
    simplified_form,
    simplified_text,
    to_simplified_latex,
)
from search_engine.expr.tree import CROSS_ENTROPY, Node, parse
from tests.search_engine.expr.test_fuzz_expressions import trees
from tests.search_engine.fuzzing import fuzz

CLASSIFICATION = "classification"
ZERO = "sub(1, 1)"


def same_loss(left: str, right: str, kind: str | None) -> bool:
    return canonical_key(parse(left), kind) == canonical_key(parse(right), kind)


@pytest.mark.parametrize(("left", "right"), [
    # y is 0 or 1: every power of it, |y|, sign(y), max(y, 0) and min(y, 1) are y; y*(1 - y) is 0
    ("square(y)", "y"),
    ("mul(y, y)", "y"),
    ("square(square(mul(y, y)))", "y"),
    ("abs(y)", "y"),
    ("sign(y)", "y"),
    ("mul(y, sub(1, y))", ZERO),
    (f"max(y, {ZERO})", "y"),
    ("min(y, 1)", "y"),
    ("sqrt(y)", "sqrt(square(y))"),
    # f is in (0, 1): |f| = f, sign(f) = 1, max(f, 0) = f, min(f, 1) = f, max(f, 1) = 1, |f - 1| = 1 - f
    ("abs(f)", "f"),
    ("sign(f)", "1"),
    (f"max(f, {ZERO})", "f"),
    ("min(f, 1)", "f"),
    ("max(f, 1)", "1"),
    ("abs(sub(f, 1))", "sub(1, f)"),
    ("sign(sub(f, 1))", "-1"),
    ("abs(tanh(f))", "tanh(f)"),
    ("abs(sqrt(f))", "sqrt(f)"),
    # the protected log of f lies below 0: |log f| = -log f
    ("abs(log(f))", "mul(-1, log(f))"),
    ("log(abs(f))", "log(f)"),
    # cross-entropy written three ways
    ("mul(-1, mul(sign(y), log(abs(f))))", "mul(-1, mul(y, log(f)))"),
    ("mul(mul(-1, square(y)), log(f))", "mul(-1, mul(y, log(f)))"),
    # one-hot arithmetic: (f - y)^2 = f^2 - 2fy + y, |f - y| = y(1 - f) + (1 - y)f
    ("square(sub(f, y))", "add(square(f), mul(y, sub(1, mul(add(1, 1), f))))"),
    ("abs(sub(f, y))", "add(mul(y, sub(1, f)), mul(sub(1, y), f))"),
    ("mul(mul(-1, -1), y)", "y"),
])
def test_one_hot_and_softmax_identities_are_one_loss_for_classification(left, right):
    assert same_loss(left, right, CLASSIFICATION)


@pytest.mark.parametrize(("left", "right"), [
    ("mul(y, log(f))", "log(f)"),
    ("f", "y"),
    ("square(f)", "f"),
    ("tanh(f)", "f"),
    ("abs(sub(f, y))", "square(sub(f, y))"),
    ("mul(y, f)", "f"),
    ("sqrt(f)", "f"),
    ("max(y, f)", "y"),
])
def test_different_losses_stay_distinct_for_classification(left, right):
    assert not same_loss(left, right, CLASSIFICATION)


@pytest.mark.parametrize(("left", "right"), [
    ("abs(y)", "y"),
    ("square(y)", "y"),
    ("sign(y)", "y"),
    ("abs(f)", "f"),
    ("sign(f)", "1"),
    ("mul(y, sub(1, y))", ZERO),
    ("max(f, 1)", "1"),
])
def test_regression_assumes_nothing_of_y_and_f(left, right):
    assert not same_loss(left, right, "regression")
    assert same_loss(left, right, CLASSIFICATION)  # the same pairs are one loss for classification


def test_the_default_kind_is_regression_s_and_reals_still_reorder():
    for text in ("add(y, f)", "mul(-1, mul(y, log(f)))", "abs(sub(f, y))"):
        assert canonical_key(parse(text)) == canonical_key(parse(text), "regression")
    assert same_loss("add(y, f)", "add(f, y)", "regression") and same_loss("add(y, f)", "add(f, y)", CLASSIFICATION)


def test_an_unknown_kind_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown task kind 'ranking'"):
        canonical_key(parse("f"), "ranking")
    with pytest.raises(ValueError, match="unknown task kind 'ranking'"):
        to_simplified_latex(parse("f"), "ranking")


def test_one_hot_forms_are_the_loss_at_the_target_class_and_elsewhere():
    at_target, at_other = one_hot_forms(CROSS_ENTROPY)
    assert at_other == 0 and at_target.free_symbols == {SYMBOL_SOFTMAX}
    assert depends_on_prediction(parse("max(f, 1)")) and not depends_on_prediction(parse("max(f, 1)"), CLASSIFICATION)
    assert not depends_on_prediction(parse("sign(f)"), CLASSIFICATION)
    assert depends_on_prediction(CROSS_ENTROPY, CLASSIFICATION)


@pytest.mark.parametrize(("text", "kind", "printed"), [
    ("mul(mul(-1, -1), y)", None, "y"),
    ("mul(mul(-1, -1), y)", CLASSIFICATION, "y"),
    ("mul(-1, mul(y, log(f)))", CLASSIFICATION, "-y*log(f)"),
    ("mul(-1, mul(sign(y), log(abs(f))))", CLASSIFICATION, "-y*log(f)"),
    ("mul(-1, mul(sign(y), log(abs(f))))", "regression", "-log(abs(f))*sign(y)"),
    ("sign(f)", CLASSIFICATION, "1"),
    ("mul(y, sub(1, y))", CLASSIFICATION, "0"),
    ("square(abs(max(tanh(max(y, f)), abs(sub(-1, -1)))))", CLASSIFICATION, "tanh(max(f, y))**2"),
])
def test_simplified_text_is_the_shortest_exact_form_for_the_task(text, kind, printed):
    assert simplified_text(parse(text), kind) == printed


def test_simplified_latex_writes_f_of_x_and_hides_the_clamp_only_inside_log_and_sqrt():
    assert to_simplified_latex(parse("mul(-1, mul(sign(y), log(abs(f))))"), CLASSIFICATION) == r"- y \log{\left(f(x) \right)}"
    assert to_simplified_latex(parse("mul(mul(-1, -1), y)"), CLASSIFICATION) == "y"
    # sqrt(f)^2 is max(|f|, eps): the clamp is part of the value here, so it is written out
    bare = to_simplified_latex(parse("square(sqrt(f))"))
    assert r"\epsilon" in bare and r"\max" in bare


def _tree_value(tree, y: float, f: float) -> float:
    fn = compile_tree(tree)
    return float(fn(torch.tensor([y], dtype=torch.float64), torch.tensor([f], dtype=torch.float64)))


def _close(got: complex, want: float) -> bool:
    return abs(got.imag) < 1e-6 and math.isclose(got.real, want, rel_tol=1e-6, abs_tol=1e-6)


@fuzz(80)
@given(trees(max_leaves=12), st.sampled_from((1e-9, 0.03, 0.5, 0.97)))
def test_one_hot_forms_and_the_printed_form_agree_with_the_tree_on_one_hot_softmax_points(tree, f):
    """Every rewrite is exact where a classification loss is evaluated: y in {0, 1}, f in (0, 1)."""
    forms = dict(zip((1.0, 0.0), one_hot_forms(tree), strict=True))
    printed = simplified_form(tree, CLASSIFICATION)
    for y, form in forms.items():
        want = _tree_value(tree, y, f)
        if not math.isfinite(want) or abs(want) > 1e12:
            continue
        assert _close(complex(form.subs(SYMBOL_SOFTMAX, f).evalf()), want)
        point = {SYMBOL_Y: y, SYMBOL_F: f, SYMBOL_SOFTMAX: f}
        assert _close(complex(printed.subs(point).evalf()), want)


def _rewritten(tree: Node, y_as: str, f_as: str) -> Node:
    """`tree` with every y written as y_as(y) and every f as f_as(f)."""
    if tree.op == P.TARGET:
        return Node(y_as, (tree,))
    if tree.op == P.PREDICTION:
        return Node(f_as, (tree,))
    return Node(tree.op, tuple(_rewritten(c, y_as, f_as) for c in tree.children))


@fuzz(60)
@given(trees(max_leaves=12), st.sampled_from(("sign", "abs", "square")))
def test_y_written_sign_abs_or_square_and_f_written_abs_anywhere_is_one_loss_for_classification(tree, y_as):
    assert canonical_key(_rewritten(tree, y_as, "abs"), CLASSIFICATION) == canonical_key(tree, CLASSIFICATION)


def test_constants_print_to_four_significant_digits_in_latex_and_text():
    # log(y) of a one-hot y is log(eps) where y = 0: its square is the constant 259.793007413442...
    tree = parse("sub(square(log(y)), mul(f, f))")
    latex, text = to_simplified_latex(tree, "classification"), simplified_text(tree, "classification")
    assert "259.8" in latex and "259.79" not in latex
    assert "259.8" in text and "259.79" not in text
    assert symbolic.short_number(sympy.Float(1.5e-5)) == "1.5e-05"
