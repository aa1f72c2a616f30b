"""Tests of the genetic programming operators that make trees: generation, repair, variation."""

from __future__ import annotations

import random

import pytest

from search_engine.evolution import operators as gp
from search_engine.expr import primitives as P
from search_engine.expr.tree import MINUS_ONE, ONE, F, Node, Y

from .trees import chain, leaf_depths

SEEDS = range(200)


# --------------------------------------------------------------------------- generation


@pytest.mark.parametrize("height", [0, 1, 2, 3, 4])
def test_full_trees_have_every_leaf_at_exactly_their_height(height):
    for seed in SEEDS:
        tree = gp.random_tree(random.Random(seed), height, "full")
        assert set(leaf_depths(tree)) == {height}


@pytest.mark.parametrize("height", [1, 2, 3, 4, 5])
def test_grow_trees_have_operator_root_and_bounded_height(height):
    depths_seen = set()
    for seed in SEEDS:
        tree = gp.random_tree(random.Random(seed), height, "grow")
        assert not tree.is_terminal
        assert 1 <= tree.height() <= height
        depths_seen.update(leaf_depths(tree))
    if height >= 2:
        assert len(depths_seen) > 1  # grow really mixes early terminals with deep ones


def test_grow_respects_min_height():
    for seed in SEEDS:
        tree = gp.random_tree(random.Random(seed), 4, "grow", min_height=2)
        assert min(leaf_depths(tree)) >= 2 and tree.height() <= 4


def test_grow_height_zero_is_a_terminal():
    assert gp.random_tree(random.Random(0), 0, "grow").op in P.TERMINALS


def test_random_tree_rejects_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        gp.random_tree(random.Random(0), 2, "half")
    with pytest.raises(ValueError, match="height"):
        gp.random_tree(random.Random(0), -1, "full")


def test_random_tree_uses_every_primitive_and_terminal():
    names = set()
    for seed in range(50):
        names.update(n.op for _, n in gp.random_tree(random.Random(seed), 4, "full").walk())
    assert names == set(P.BINARY) | set(P.UNARY) | set(P.TERMINALS)


def test_ramped_half_and_half_heights_and_variables():
    for seed in SEEDS:
        trees = gp.ramped_half_and_half(random.Random(seed), 12)
        assert len(trees) == 12
        for tree in trees:
            assert 2 <= tree.height() <= 4
            assert tree.has_both_variables()


def test_ramped_half_and_half_ramps_over_heights():
    heights = set()
    for seed in range(20):
        heights.update(t.height() for t in gp.ramped_half_and_half(random.Random(seed), 12))
    assert heights == {2, 3, 4}


def test_ramped_half_and_half_alternates_grow_and_full_per_cycle():
    # heights 2, 3, 4 grown, then 2, 3, 4 full, and so on; repair keeps full trees' leaves level
    uneven_grow = 0
    for seed in SEEDS:
        trees = gp.ramped_half_and_half(random.Random(seed), 12)
        for i, tree in enumerate(trees):
            level = len(set(leaf_depths(tree))) == 1
            if (i // 3) % 2 == 1:
                assert level
            else:
                uneven_grow += not level
    assert uneven_grow > 0


def test_ramped_half_and_half_validates_range():
    with pytest.raises(ValueError):
        gp.ramped_half_and_half(random.Random(0), 5, min_height=3, max_height=2)
    with pytest.raises(ValueError):
        gp.ramped_half_and_half(random.Random(0), 5, min_height=0, max_height=2)


# --------------------------------------------------------------------------- repair


def test_repair_returns_complete_trees_unchanged():
    tree = Node("add", (Y, Node("log", (F,))))
    assert gp.repair(random.Random(0), tree, 10) is tree


@pytest.mark.parametrize("terminal", [Y, F, ONE, MINUS_ONE])
@pytest.mark.parametrize("max_height", [1, 2, 5])
def test_repair_single_terminal(terminal, max_height):
    for seed in range(50):
        fixed = gp.repair(random.Random(seed), terminal, max_height)
        assert fixed.has_both_variables()
        assert fixed.height() == 1
        assert fixed.op in P.BINARY and {c.op for c in fixed.children} == {P.TARGET, P.PREDICTION}


def test_repair_pair_uses_both_argument_orders_and_several_operators():
    fixed = [gp.repair(random.Random(seed), ONE, 3) for seed in range(100)]
    assert {t.children for t in fixed} == {(Y, F), (F, Y)}
    assert {t.op for t in fixed} == set(P.BINARY)


@pytest.mark.parametrize("max_height", [1, 2, 3, 6, 10])
def test_repair_unary_chains_up_to_the_limit(max_height):
    for seed in SEEDS:
        rng = random.Random(seed)
        height = rng.randint(0, max_height)
        tree = chain([rng.choice(P.UNARY) for _ in range(height)], Node(rng.choice(P.TERMINALS)))
        fixed = gp.repair(rng, tree, max_height)
        assert fixed.has_both_variables()
        assert fixed.height() <= max_height
        # the chain above the replaced position is kept
        keep = min(height, max_height - 1)
        assert [n.op for _, n in fixed.walk()][:keep] == [n.op for _, n in tree.walk()][:keep]


def test_repair_chain_at_the_limit_replaces_the_parent():
    tree = chain(["abs", "tanh", "sqrt"], Y)  # sqrt(tanh(abs(y))), height 3
    fixed = gp.repair(random.Random(1), tree, 3)
    assert fixed.height() == 3
    assert fixed.op == "sqrt" and fixed.children[0].op == "tanh"
    assert fixed.children[0].children[0].op in P.BINARY


def test_repair_taller_chain_is_cut_to_the_limit():
    tree = chain(["abs"] * 8, ONE)
    fixed = gp.repair(random.Random(3), tree, 4)
    assert fixed.has_both_variables() and fixed.height() == 4


def test_repair_overwrites_only_leaves_and_keeps_the_present_variable():
    for seed in SEEDS:
        rng = random.Random(seed)
        tree = gp.random_tree(rng, rng.randint(1, 4), rng.choice(["grow", "full"]))
        leaves = [p for p, n in tree.walk() if n.is_terminal]
        if len(leaves) < 2:
            continue
        fixed = gp.repair(rng, tree, 4)
        assert fixed.has_both_variables()
        assert fixed.height() == tree.height()
        assert fixed.paths() == tree.paths()  # same shape
        assert all(fixed.at(p).op == n.op for p, n in tree.walk() if not n.is_terminal)
        changed = [p for p in leaves if fixed.at(p).op != tree.at(p).op]
        missing = {P.TARGET, P.PREDICTION} - tree.terminals()
        assert sorted(fixed.at(p).op for p in changed) == sorted(missing)


def test_repair_with_two_copies_of_one_variable():
    for seed in range(50):
        fixed = gp.repair(random.Random(seed), Node("mul", (Y, Y)), 5)
        assert fixed.op == "mul" and {c.op for c in fixed.children} == {P.TARGET, P.PREDICTION}


def test_repair_rejects_height_zero_limit():
    with pytest.raises(ValueError):
        gp.repair(random.Random(0), Y, 0)


# --------------------------------------------------------------------------- variation


def test_crossover_swaps_subtrees():
    for seed in SEEDS:
        rng = random.Random(seed)
        a, b = gp.ramped_half_and_half(rng, 2)
        c, d = gp.one_point_crossover(rng, a, b)
        assert c.size() + d.size() == a.size() + b.size()
        assert any(
            c == a.replace(p, b.at(q)) and d == b.replace(q, a.at(p)) for p in a.paths() for q in b.paths()
        )


def test_crossover_of_two_terminals_returns_them():
    assert gp.one_point_crossover(random.Random(0), Y, F) == (Y, F)


def test_crossover_with_one_terminal_swaps_it_in():
    b = Node("add", (Y, F))
    results = {gp.one_point_crossover(random.Random(seed), ONE, b) for seed in range(50)}
    assert results == {(b, ONE), (Y, Node("add", (ONE, F))), (F, Node("add", (Y, ONE)))}


def test_mutation_changes_one_subtree_within_its_height():
    for seed in SEEDS:
        rng = random.Random(seed)
        tree = gp.ramped_half_and_half(rng, 1)[0]
        mutant = gp.uniform_subtree_mutation(rng, tree, 0, 2)
        assert mutant.height() <= tree.height() + 2
        # the two trees agree everywhere but at one position
        shared = [p for p in tree.paths() if p in mutant.paths()]
        assert any(mutant.replace(p, ONE) == tree.replace(p, ONE) for p in shared)


def test_mutation_min_height_is_respected():
    for seed in SEEDS:
        rng = random.Random(seed)
        mutant = gp.uniform_subtree_mutation(rng, Y, 2, 3)  # a lone leaf: the root is replaced
        assert 2 <= mutant.height() <= 3


def test_mutation_validates_heights():
    with pytest.raises(ValueError):
        gp.uniform_subtree_mutation(random.Random(0), Y, 3, 1)


def test_within_limit():
    assert gp.within_limit(chain(["abs"] * 10, Y))
    assert not gp.within_limit(chain(["abs"] * 11, Y))
    assert gp.within_limit(chain(["abs"] * 3, Y), max_height=3)
