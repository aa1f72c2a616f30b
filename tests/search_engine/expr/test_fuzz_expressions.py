"""Property-based tests of the expression parser, printer, JSON form and symbolic views.

Properties: printing then parsing (text or JSON) gives back the same tree; any text or JSON-like
value is either read into a tree or refused with ExpressionError, never another exception; the
LaTeX and canonical (SymPy) views accept every tree. Settings: `tests/search_engine/fuzzing.py`.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from search_engine.expr import primitives as P
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
    MAX_NESTING,
    MAX_TEXT_LENGTH,
    ExpressionError,
    Node,
    from_json,
    parse,
    prefix_size,
    to_json,
    to_prefix,
)
from tests.search_engine.fuzzing import fuzz

# ---------------------------------------------------------------- strategies

TERMINALS = st.sampled_from(P.TERMINALS).map(Node)


def _calls(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    """One operator applied to trees drawn from `children`."""
    unary = st.builds(lambda op, a: Node(op, (a,)), st.sampled_from(P.UNARY), children)
    binary = st.builds(lambda op, a, b: Node(op, (a, b)), st.sampled_from(P.BINARY), children, children)
    return unary | binary


def trees(max_leaves: int = 24) -> st.SearchStrategy[Node]:
    """Random trees over the whole primitive set; st.recursive nests at most ~log2(max_leaves)+2 deep."""
    return st.recursive(TERMINALS, _calls, max_leaves=max_leaves)


#: Names a prefix string may contain: every real symbol, near misses and arbitrary identifiers.
NAMES = st.sampled_from((*P.PRIMITIVES, "y", "f", "x", "Add", "logg", "exp", "pow", "_")) | st.from_regex(
    r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True
)
#: Numeric literals, including the allowed 1 / -1 spellings and others the lexer must refuse cleanly.
NUMBERS = st.sampled_from(("1", "-1", "1.0", "-1.00", "+1", "1e0", "-10e-1", "2", "0", ".5", "1e999", "-"))
NUMBERS |= st.from_regex(r"[-+]?(\d{1,4}\.?\d{0,3}|\.\d{1,3})([eE][-+]?\d{1,4})?", fullmatch=True)
#: Any Unicode decimal digit: the lexer's \d matches all of them, so float() must read them too.
UNICODE_DIGITS = st.text(st.characters(categories=["Nd"]), min_size=1, max_size=4)
PUNCTUATION = st.sampled_from(("(", ")", ",", "((", "))", ",,", "()"))
SPACE = st.sampled_from((" ", "\t", "\n", "\u00a0", "\u2003", ""))
TOKEN_TEXT = st.lists(NAMES | NUMBERS | UNICODE_DIGITS | PUNCTUATION | SPACE, max_size=40).map("".join)


def _json_scalars() -> st.SearchStrategy:
    return st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)


#: JSON-like values whose dicts favour the real keys and real op names, so many get deep into from_json.
JSON_KEYS = st.sampled_from(("op", "children", "op", "children", "args", "")) | st.text(max_size=4)
JSON_OPS = st.sampled_from((*P.PRIMITIVES, *P.TERMINALS, "exp", "Y", ""))
JSON_VALUES = st.recursive(
    _json_scalars() | JSON_OPS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(JSON_KEYS, inner, max_size=3)
    | st.builds(lambda op, kids: {"op": op, "children": kids}, JSON_OPS, st.lists(inner, max_size=3)),
    max_leaves=20,
)


def _refused_or_tree(read, value) -> Node | None:
    """`read(value)`: a Node, or None when refused with an ExpressionError carrying a message."""
    try:
        tree = read(value)
    except ExpressionError as exc:
        assert str(exc), "an ExpressionError must say what is wrong"
        if exc.position is not None and isinstance(value, str):
            assert 0 <= exc.position <= len(value)
        return None
    assert isinstance(tree, Node)
    return tree


# ---------------------------------------------------------------- round trips


@fuzz(300)
@given(trees())
def test_text_round_trip(tree):
    """parse(to_prefix(t)) == t for every tree, the printed form is stable, and its size is counted
    from the text alone."""
    text = to_prefix(tree)
    assert parse(text) == tree
    assert to_prefix(parse(text)) == text
    assert prefix_size(text) == tree.size()


@fuzz(300)
@given(trees())
def test_json_round_trip(tree):
    """from_json(to_json(t)) == t, also after a trip through JSON text."""
    assert from_json(to_json(tree)) == tree
    assert from_json(json.loads(json.dumps(to_json(tree)))) == tree


@fuzz(40)
@given(st.integers(0, MAX_NESTING + 3), st.sampled_from(P.UNARY), TERMINALS)
def test_nesting_limit_is_the_same_for_text_and_json(depth, op, leaf):
    """Chains up to MAX_NESTING calls round-trip in both forms; deeper ones are refused by both."""
    tree = leaf
    for _ in range(depth):
        tree = Node(op, (tree,))
    if depth <= MAX_NESTING:
        assert parse(to_prefix(tree)) == tree
        assert from_json(to_json(tree)) == tree
    else:
        with pytest.raises(ExpressionError, match="nested too deeply"):
            parse(to_prefix(tree))
        with pytest.raises(ExpressionError, match="nested too deeply"):
            from_json(to_json(tree))


# ---------------------------------------------------------------- text never crashes the parser


@fuzz(300)
@given(st.text(max_size=60))
def test_arbitrary_text_is_a_tree_or_an_expression_error(text):
    """Any Unicode text: parse returns a tree or raises ExpressionError (with a sane position)."""
    _refused_or_tree(parse, text)


@fuzz(500)
@given(TOKEN_TEXT)
def test_token_soup_is_a_tree_or_an_expression_error(text):
    """Text built from the grammar's own tokens (names, numbers, brackets, commas, spaces); when it
    parses, the tree prints back to text that parses to the same tree."""
    tree = _refused_or_tree(parse, text)
    if tree is not None:
        assert parse(to_prefix(tree)) == tree


@fuzz(300)
@given(trees(), st.data())
def test_mangled_valid_text_is_a_tree_or_an_expression_error(tree, data):
    """A valid prefix string with a few characters deleted, duplicated or inserted never crashes."""
    text = to_prefix(tree)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        edit = data.draw(st.sampled_from(("delete", "insert", "double")))
        if edit == "delete":
            text = text[:i] + text[i + 1:]
        elif edit == "double":
            text = text[:i] + text[i:i + 1] + text[i:]
        else:
            text = text[:i] + data.draw(st.sampled_from("(),-.1e fy\x00\u0661")) + text[i:]
    _refused_or_tree(parse, text)


@fuzz(20)
@given(st.sampled_from(("(", ")", ",", "abs(", "1", " ")), st.integers(MAX_TEXT_LENGTH - 2, MAX_TEXT_LENGTH + 2))
def test_text_around_the_length_limit(piece, length):
    """Long inputs near MAX_TEXT_LENGTH are refused or read without recursion errors."""
    _refused_or_tree(parse, (piece * length)[:length])


@fuzz(50)
@given(st.none() | st.integers() | st.floats() | st.binary() | st.lists(st.text()) | st.builds(object))
def test_parse_of_a_non_string_is_an_expression_error(value):
    """Non-text input (bytes, numbers, lists, None) is refused with ExpressionError, not TypeError."""
    with pytest.raises(ExpressionError):
        parse(value)


# ---------------------------------------------------------------- JSON never crashes the reader


@fuzz(400)
@given(JSON_VALUES)
def test_json_like_values_are_a_tree_or_an_expression_error(value):
    """Any JSON-like value: from_json returns a tree (which round-trips) or raises ExpressionError."""
    tree = _refused_or_tree(from_json, value)
    if tree is not None:
        assert from_json(to_json(tree)) == tree


@fuzz(100)
@given(trees(), st.data())
def test_mangled_valid_json_is_a_tree_or_an_expression_error(tree, data):
    """A valid JSON tree with one node's op or children replaced by a random value never crashes."""
    obj = to_json(tree)
    node = obj
    while "children" in node and data.draw(st.booleans()):
        node = data.draw(st.sampled_from(node["children"]))
    key = data.draw(st.sampled_from(("op", "children", "extra")))
    node[key] = data.draw(JSON_VALUES)
    _refused_or_tree(from_json, obj)


# ---------------------------------------------------------------- symbolic views


@fuzz(150)
@given(trees(max_leaves=16))
def test_latex_and_canonical_forms_accept_every_tree(tree):
    """to_latex, canonical_form/key, to_simplified_latex and depends_on_prediction never raise."""
    latex = to_latex(tree)
    assert isinstance(latex, str) and latex
    assert latex.count(r"\left") == latex.count(r"\right")
    assert isinstance(canonical_key(tree), str)
    assert canonical_form(tree).free_symbols <= {SYMBOL_Y, SYMBOL_F}
    assert isinstance(to_simplified_latex(tree), str)
    assert isinstance(depends_on_prediction(tree), bool)


@fuzz(40)
@given(trees(max_leaves=6))
def test_full_sympy_form_accepts_small_trees(tree):
    """to_sympy (SymPy's full evaluation, slow on big min/max trees) accepts every small tree."""
    assert to_sympy(tree).free_symbols <= {SYMBOL_Y, SYMBOL_F}


@fuzz(60)
@given(trees(max_leaves=12), st.sampled_from(((0.5, 2.0), (-1.5, 0.25), (3.0, -3.0))))
def test_canonical_form_agrees_with_the_tree_where_both_are_finite(tree, point):
    """The canonical form is the same function as the tree: equal values at a sample point."""
    import torch

    from search_engine.expr.compile import compile_tree

    y, f = point
    fn = compile_tree(tree)
    want = float(fn(torch.tensor([y], dtype=torch.float64), torch.tensor([f], dtype=torch.float64)).sum())
    got = complex(canonical_form(tree).subs({SYMBOL_Y: y, SYMBOL_F: f}).evalf())
    if math.isfinite(want) and math.isfinite(got.real) and abs(want) < 1e12:
        assert got.imag == pytest.approx(0.0, abs=1e-6)
        assert got.real == pytest.approx(want, rel=1e-6, abs=1e-6)
