"""Shared cases of the exporter tests: every primitive, random trees and weights, both kinds, all reductions."""

from __future__ import annotations

import random
from dataclasses import dataclass

from search_engine.evolution import operators as gp
from search_engine.export.spec import LearnedLossSpec
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, Node, parse, to_prefix

# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

#: Every primitive, both constants, and constant-only subtrees (log(-1), tanh(1)).
ALL_OPS = parse(
    "add(div(sign(y), log(f)), max(min(sqrt(f), tanh(mul(1, y))), "
    "abs(sub(square(f), add(log(-1), tanh(1))))))"
)


def random_weights(tree: Node, seed: int) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(rng.uniform(-1.5, 1.5) for _ in range(tree.size() - 1))  # full-precision floats


def random_trees() -> list[Node]:
    rng = random.Random(12345)
    trees = []
    for height, method in ((3, "grow"), (3, "full"), (4, "grow")):
        trees.append(gp.repair(rng, gp.random_tree(rng, height, method), max_height=10))
    return trees


@dataclass(frozen=True)
class Case:
    name: str
    tree: Node
    kind: str
    weights: tuple[float, ...] | None


def _cases() -> list[Case]:
    cases = [
        Case("ce_plain", CROSS_ENTROPY, "classification", None),
        Case("ce_weighted", CROSS_ENTROPY, "classification", random_weights(CROSS_ENTROPY, 1)),
        Case("se_plain", SQUARED_ERROR, "regression", None),
        Case("se_weighted", SQUARED_ERROR, "regression", random_weights(SQUARED_ERROR, 2)),
        Case("allops_cls_plain", ALL_OPS, "classification", None),
        Case("allops_cls_weighted", ALL_OPS, "classification", random_weights(ALL_OPS, 3)),
        Case("allops_reg_plain", ALL_OPS, "regression", None),
        Case("allops_reg_weighted", ALL_OPS, "regression", random_weights(ALL_OPS, 4)),
    ]
    for i, tree in enumerate(random_trees()):
        kind = "classification" if i % 2 == 0 else "regression"
        cases.append(Case(f"random{i}_plain", tree, kind, None))
        cases.append(Case(f"random{i}_weighted", tree, kind, random_weights(tree, 10 + i)))
    return cases


CASES = _cases()


def spec_for(case: Case, **overrides) -> LearnedLossSpec:
    fields = dict(
        expression=to_prefix(case.tree),
        weights=case.weights,
        kind=case.kind,
        dataset="digits",
        model="mlp",
        fitness=0.04,
        baseline_loss="cross_entropy" if case.kind == "classification" else "squared_error",
        baseline_fitness=0.05,
        metric="error rate" if case.kind == "classification" else "MSE",
        meta_test=None,
    )
    return LearnedLossSpec(**{**fields, **overrides})


