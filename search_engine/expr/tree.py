"""Loss expressions: immutable trees over the primitive set.

A tree is a `Node` whose `op` is a primitive name (see `primitives.PRIMITIVES`)
or a terminal name (`y`, `f`, `1`, `-1`). Trees are immutable and hashable, so
GP operators build new trees instead of editing old ones. Positions inside a
tree are *paths*: tuples of child indices from the root (the root is `()`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from search_engine.catalog import BASELINES, baseline_name
from search_engine.expr import primitives as P

Path = tuple[int, ...]


@dataclass(frozen=True)
class Node:
    """One node of a loss expression tree."""

    op: str
    children: tuple[Node, ...] = ()

    def __post_init__(self) -> None:
        expected = P.arity(self.op)  # raises KeyError for unknown names
        if len(self.children) != expected:
            raise ValueError(f"{self.op!r} takes {expected} argument(s), got {len(self.children)}")

    @property
    def is_terminal(self) -> bool:
        return not self.children

    def height(self) -> int:
        """Edges on the longest root-to-leaf path (a lone terminal has height 0)."""
        return 1 + max(c.height() for c in self.children) if self.children else 0

    def size(self) -> int:
        """Number of nodes."""
        return 1 + sum(c.size() for c in self.children)

    def walk(self, path: Path = ()) -> Iterator[tuple[Path, Node]]:
        """Yield (path, node) for every node in prefix (pre-)order."""
        yield path, self
        for i, child in enumerate(self.children):
            yield from child.walk(path + (i,))

    def paths(self) -> list[Path]:
        """All node paths in prefix order."""
        return [p for p, _ in self.walk()]

    def at(self, path: Path) -> Node:
        """The subtree at `path`."""
        node = self
        for i in path:
            node = node.children[i]
        return node

    def replace(self, path: Path, new: Node) -> Node:
        """A copy of this tree with the subtree at `path` replaced by `new`."""
        if not path:
            return new
        i, rest = path[0], path[1:]
        kids = list(self.children)
        kids[i] = kids[i].replace(rest, new)
        return Node(self.op, tuple(kids))

    def depth_of(self, path: Path) -> int:
        """Depth of a position (the root is at depth 0)."""
        return len(path)

    def terminals(self) -> set[str]:
        """Names of the terminals that occur in the tree."""
        return {n.op for _, n in self.walk() if n.is_terminal}

    def has_both_variables(self) -> bool:
        """True if the tree mentions both the target y and the prediction f(x)."""
        t = self.terminals()
        return P.TARGET in t and P.PREDICTION in t


def leaf(name: str) -> Node:
    """A terminal node."""
    return Node(name)


Y = leaf(P.TARGET)
F = leaf(P.PREDICTION)
ONE = leaf("1")
MINUS_ONE = leaf("-1")


# --------------------------------------------------------------------------------------------
# Errors and limits
# --------------------------------------------------------------------------------------------

#: Longest prefix string `parse` accepts; user text beyond this is rejected before tokenizing.
MAX_TEXT_LENGTH = 10_000
#: Deepest nesting of operator calls accepted from text or JSON; bounds the parser's recursion.
MAX_NESTING = 64


class ExpressionError(ValueError):
    """A loss expression (text or JSON) that cannot be turned into a tree.

    `position` is the 0-based character offset into the text where the problem was found, or
    None when the problem has no position (JSON input, an empty string).
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


def _allowed_names() -> str:
    """The names a prefix string may use, in table order, for error messages."""
    return ", ".join((*P.PRIMITIVES, *P.TERMINALS))


def _unknown_symbol_message(name: str) -> str:
    """'unknown symbol' text, with a close-match hint when there is one."""
    hint = difflib.get_close_matches(name, (*P.PRIMITIVES, *P.TERMINALS), n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"unknown symbol {name!r}{suggestion}; allowed: {_allowed_names()}"


def _arity_message(name: str, got: int) -> str:
    """The wrong-argument-count text, e.g. "'add' takes 2 arguments, got 1"."""
    want = P.arity(name)
    noun = "argument" if want == 1 else "arguments"
    return f"{name!r} takes {want} {noun}, got {got}"


# --------------------------------------------------------------------------------------------
# Prefix strings: to_prefix / parse
# --------------------------------------------------------------------------------------------


def to_prefix(node: Node) -> str:
    """Function-call prefix form, e.g. ``mul(-1, mul(y, log(f)))``; `parse` reads it back."""
    if node.is_terminal:
        return node.op
    return f"{node.op}({', '.join(to_prefix(c) for c in node.children)})"


class _Token(NamedTuple):
    kind: str  # "name", "number", "(", ")", ",", or "end"
    text: str
    pos: int


# A number is lexed generously (2, 0.5, 1e3, -1.0) so that a stray constant gets the
# "only 1 and -1" message instead of a confusing "unexpected character".
_TOKEN_RE = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<punct>[(),])"
)


def prefix_size(text: str) -> int:
    """Nodes of the tree a prefix string writes (``mul(-1, mul(y, log(f)))``: 6), counted from its
    tokens without building the tree: `parse(text).size()` for text that parses, at a fifth of the
    cost (a page sizes thousands of stored expressions). The text is not checked."""
    return sum(1 for _, name, number, _ in _TOKEN_RE.findall(text) if name or number)


def _tokenize(text: str) -> list[_Token]:
    """Split text into tokens, ending with an "end" token; reject characters outside the grammar."""
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            # A lone '-' is the likeliest slip (negating a symbol); say how to write it instead.
            hint = "; negate with mul(-1, ...) or sub(...)" if text[pos] == "-" else ""
            raise ExpressionError(f"unexpected character {text[pos]!r} at position {pos}{hint}", pos)
        kind = m.lastgroup
        if kind == "punct":
            tokens.append(_Token(m.group(), m.group(), pos))
        elif kind != "space":
            tokens.append(_Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _constant_name(token: _Token) -> str:
    """The terminal name of a numeric token; only values equal to 1 or -1 are allowed."""
    value = float(token.text)  # the regex guarantees a plain decimal literal
    for name, constant in P.CONSTANTS.items():
        if value == constant:
            return name
    raise ExpressionError(
        f"only the constants 1 and -1 are allowed, got {token.text!r} at position {token.pos}", token.pos
    )


def _unexpected_close(token: _Token) -> ExpressionError:
    """Error for a ')' that closes nothing."""
    return ExpressionError(f"unbalanced parentheses: unexpected ')' at position {token.pos}", token.pos)


class _Parser:
    """Recursive-descent parser over a token list (one instance per `parse` call)."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.open_parens: list[int] = []  # positions of '(' not yet closed, for unbalanced errors

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":  # the end token stays current, so errors can still point at it
            self.index += 1
        return token

    def fail_at_end(self, expected: str) -> ExpressionError:
        """Error for text that stops too early; names the unclosed '(' when there is one."""
        end = self.peek().pos
        if self.open_parens:
            where = self.open_parens[-1]
            return ExpressionError(
                f"unbalanced parentheses: missing ')' for the '(' at position {where} "
                f"(text ended at position {end}, expected {expected})",
                end,
            )
        return ExpressionError(f"unexpected end of text at position {end}: expected {expected}", end)

    def expression(self, depth: int) -> Node:
        """expression := constant | terminal | operator '(' expression (',' expression)* ')'."""
        token = self.take()
        if token.kind == "number":
            return self.terminal(_constant_name(token))
        if token.kind == "name":
            return self.named(token, depth)
        if token.kind == "end":
            raise self.fail_at_end("a symbol")
        if token.kind == ")" and self.open_parens:
            raise ExpressionError(
                f"missing argument: expected a symbol at position {token.pos}, found ')'", token.pos
            )
        if token.kind == ")":
            raise _unexpected_close(token)
        raise ExpressionError(
            f"unexpected {token.text!r} at position {token.pos}: expected a symbol", token.pos
        )

    def terminal(self, name: str) -> Node:
        """A terminal leaf; a '(' right after it is an attempt to call it, which is an error."""
        nxt = self.peek()
        if nxt.kind == "(":
            raise ExpressionError(
                f"terminal {name!r} takes no arguments, but is followed by '(' at position {nxt.pos}", nxt.pos
            )
        return Node(name)

    def named(self, token: _Token, depth: int) -> Node:
        """A terminal or an operator call, after its name token."""
        name = token.text
        if name in P.TERMINALS:
            return self.terminal(name)
        if name not in P.PRIMITIVES:
            raise ExpressionError(f"{_unknown_symbol_message(name)} (at position {token.pos})", token.pos)
        opener = self.take()
        if opener.kind != "(":
            if opener.kind == "end":
                raise self.fail_at_end(f"'(' after {name!r}")
            raise ExpressionError(
                f"expected '(' after {name!r} at position {opener.pos}, found {opener.text!r}", opener.pos
            )
        if depth >= MAX_NESTING:
            raise ExpressionError(
                f"expression nested too deeply: more than {MAX_NESTING} levels at position {opener.pos}",
                opener.pos,
            )
        self.open_parens.append(opener.pos)
        args = self.arguments(depth + 1)
        self.open_parens.pop()
        if len(args) != P.arity(name):
            raise ExpressionError(f"{_arity_message(name, len(args))} (at position {token.pos})", token.pos)
        return Node(name, tuple(args))

    def arguments(self, depth: int) -> list[Node]:
        """Comma-separated arguments up to and including the closing ')'."""
        args: list[Node] = []
        if self.peek().kind == ")":
            self.take()
            return args
        while True:
            args.append(self.expression(depth))
            token = self.take()
            if token.kind == ")":
                return args
            if token.kind == "end":
                raise self.fail_at_end("',' or ')'")
            if token.kind != ",":
                raise ExpressionError(
                    f"expected ',' or ')' at position {token.pos}, found {token.text!r}", token.pos
                )


def parse(text: str) -> Node:
    """Read a prefix string such as ``mul(-1, mul(y, log(f)))`` into a tree.

    Whitespace is free. Raises ExpressionError naming the problem and its character position.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_LENGTH:
        raise ExpressionError(f"expression too long: {len(text)} characters (limit {MAX_TEXT_LENGTH})")
    if not text.strip():
        raise ExpressionError("empty expression", 0)
    parser = _Parser(_tokenize(text))
    tree = parser.expression(depth=0)
    rest = parser.peek()
    if rest.kind == ")":
        raise _unexpected_close(rest)
    if rest.kind != "end":
        snippet = text[rest.pos : rest.pos + 20]
        raise ExpressionError(f"unexpected trailing text at position {rest.pos}: {snippet!r}", rest.pos)
    return tree


# --------------------------------------------------------------------------------------------
# JSON: to_json / from_json
# --------------------------------------------------------------------------------------------


def to_json(node: Node) -> dict[str, Any]:
    """Nested ``{"op": ..., "children": [...]}``; terminals have no "children" key."""
    if node.is_terminal:
        return {"op": node.op}
    return {"op": node.op, "children": [to_json(c) for c in node.children]}


def from_json(obj: Any) -> Node:
    """Inverse of `to_json` (a terminal may also carry ``"children": []``).

    Raises ExpressionError naming the JSON path of the bad node, e.g. ``$.children[1]``.
    """
    return _node_from_json(obj, "$", 0)


def _node_from_json(obj: Any, path: str, depth: int) -> Node:
    """One level of `from_json`; `path` locates `obj` for error messages."""
    if depth > MAX_NESTING:
        raise ExpressionError(f"at {path}: expression nested too deeply (more than {MAX_NESTING} levels)")
    if not isinstance(obj, dict):
        raise ExpressionError(f"at {path}: expected an object with an 'op', got {type(obj).__name__}")
    extra = sorted(set(obj) - {"op", "children"}, key=str)
    if extra:
        raise ExpressionError(f"at {path}: unexpected key(s) {', '.join(map(repr, extra))}")
    op = obj.get("op")
    if not isinstance(op, str):
        raise ExpressionError(f"at {path}: 'op' must be a string, got {type(op).__name__}")
    if op not in P.PRIMITIVES and op not in P.TERMINALS:
        raise ExpressionError(f"at {path}: {_unknown_symbol_message(op)}")
    children = obj.get("children", [])
    if not isinstance(children, list):
        raise ExpressionError(f"at {path}: 'children' must be a list, got {type(children).__name__}")
    if len(children) != P.arity(op):
        raise ExpressionError(f"at {path}: {_arity_message(op, len(children))}")
    kids = tuple(_node_from_json(c, f"{path}.children[{i}]", depth + 1) for i, c in enumerate(children))
    return Node(op, kids)


# --------------------------------------------------------------------------------------------
# Known losses
# --------------------------------------------------------------------------------------------

#: The baselines of the catalogue as trees: "cross_entropy" is -y * log(f) (summed over classes and
#: averaged over the batch, the usual cross-entropy on softmax probabilities), "squared_error" (y - f)^2.
KNOWN_LOSSES: dict[str, Node] = {name: parse(text) for name, text in BASELINES.items()}
CROSS_ENTROPY = KNOWN_LOSSES[baseline_name("classification")]
SQUARED_ERROR = KNOWN_LOSSES[baseline_name("regression")]
