"""Tree and fitness builders shared by the genetic-operator tests."""

from __future__ import annotations

import random

from search_engine.evolution import operators as gp
from search_engine.expr import primitives as P
from search_engine.expr.tree import Node


def chain(ops: list[str], base: Node) -> Node:
    """Unary operators applied to `base`, the last name outermost."""
    for op in ops:
        base = Node(op, (base,))
    return base


def deep_tree(rng: random.Random, height: int) -> Node:
    """A tree with both variables and exactly `height` (>= 3), built by wrapping a small tree."""
    tree = gp.repair(rng, gp.random_tree(rng, 2, "full"), 2)
    while tree.height() < height:
        if rng.random() < 0.5:
            tree = Node(rng.choice(P.UNARY), (tree,))
        else:
            other = gp.random_tree(rng, rng.randint(0, min(2, tree.height())), "grow")
            kids = [tree, other]
            rng.shuffle(kids)
            tree = Node(rng.choice(P.BINARY), tuple(kids))
    assert tree.height() == height and tree.has_both_variables()
    return tree


def leaf_depths(tree: Node) -> list[int]:
    return [len(p) for p, n in tree.walk() if n.is_terminal]


def random_fitnesses(rng: random.Random, n: int) -> list[float | None]:
    return [None if rng.random() < 0.2 else rng.uniform(0.0, 10.0) for _ in range(n)]
