"""Tests of the genetic programming operators (search_engine.evolution.operators)."""

from __future__ import annotations

import math
import random

import pytest

from search_engine.evolution import operators as gp
from search_engine.expr import primitives as P
from search_engine.expr.tree import MINUS_ONE, ONE, F, Node, Y

SEEDS = range(200)


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


# --------------------------------------------------------------------------- selection


def test_tournament_only_finite_individual_always_wins():
    population = [Node("add", (Y, F)), Node("sub", (Y, F)), Node("mul", (Y, F)), Node("max", (Y, F))]
    fitnesses = [None, 3.0, float("nan"), None]
    for seed in SEEDS:
        winners = gp.tournament_select(random.Random(seed), population, fitnesses, 5, size=80)
        assert all(w is population[1] for w in winners)


def test_tournament_winner_is_best_of_sample_statistically():
    # 4 distinct fitnesses, tournaments of 2: P(best wins) = 1 - (3/4)^2, P(worst wins) = (1/4)^2.
    population = [Node(op, (Y, F)) for op in ("add", "sub", "mul", "max")]
    fitnesses = [2.0, 0.5, 9.0, None]
    winners = gp.tournament_select(random.Random(7), population, fitnesses, 20000, size=2)
    share = {id(t): sum(w is t for w in winners) / len(winners) for t in population}
    assert share[id(population[1])] == pytest.approx(7 / 16, abs=0.02)
    assert share[id(population[3])] == pytest.approx(1 / 16, abs=0.01)
    assert share[id(population[0])] == pytest.approx(5 / 16, abs=0.02)


def test_tournament_of_one_is_uniform_and_returns_k():
    population = [Node(op, (Y, F)) for op in ("add", "sub")]
    winners = gp.tournament_select(random.Random(0), population, [0.0, 1.0], 4000, size=1)
    assert len(winners) == 4000
    assert sum(w is population[1] for w in winners) / 4000 == pytest.approx(0.5, abs=0.03)


def test_tournament_validates():
    with pytest.raises(ValueError):
        gp.tournament_select(random.Random(0), [Y], [1.0, 2.0], 1)
    with pytest.raises(ValueError):
        gp.tournament_select(random.Random(0), [Y], [1.0], 1, size=0)


def test_elites_are_the_true_best_with_none_last_and_stable_ties():
    population = [Node(op, (Y, F)) for op in ("add", "sub", "mul", "max", "min", "div")]
    fitnesses = [None, 1.0, 0.5, 1.0, float("inf"), 0.1]
    best = gp.elites(population, fitnesses, 6)
    assert best == [population[i] for i in (5, 2, 1, 3, 0, 4)]
    assert gp.elites(population, fitnesses, 2) == [population[5], population[2]]
    assert gp.elites(population, fitnesses, 0) == []


def test_elites_match_sorting_over_random_populations():
    for seed in SEEDS:
        rng = random.Random(seed)
        population = gp.ramped_half_and_half(rng, 10)
        fitnesses = random_fitnesses(rng, 10)
        best = gp.elites(population, fitnesses, 3)
        finite = sorted(f for f in fitnesses if f is not None)
        got = [next(f for t2, f in zip(population, fitnesses, strict=True) if t2 is t) for t in best]
        assert got[: len(finite[:3])] == finite[:3]
        assert all(f is None for f in got[len(finite[:3]):])


@pytest.mark.parametrize(
    ("size", "rate", "expected"),
    [(100, 0.05, 5), (10, 0.05, 1), (3, 0.01, 1), (10, 0.25, 3), (10, 0.0, 0), (10, 1.0, 10), (0, 0.5, 0)],
)
def test_n_elites(size, rate, expected):
    assert gp.n_elites(size, rate) == expected


def test_n_elites_validates_rate():
    with pytest.raises(ValueError, match="elitism_rate"):
        gp.n_elites(10, 1.5)


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


# --------------------------------------------------------------------------- generations


def test_choose_operator_mix_matches_rates():
    rng = random.Random(0)
    draws = [gp.choose_operator(rng, 0.7, 0.25) for _ in range(20000)]
    assert draws.count(gp.CROSSOVER) / 20000 == pytest.approx(0.70, abs=0.015)
    assert draws.count(gp.MUTATION) / 20000 == pytest.approx(0.25, abs=0.015)
    assert draws.count(gp.REPRODUCTION) / 20000 == pytest.approx(0.05, abs=0.01)


def test_choose_operator_extremes():
    rng = random.Random(0)
    assert {gp.choose_operator(rng, 1.0, 0.0) for _ in range(500)} == {gp.CROSSOVER}
    assert {gp.choose_operator(rng, 0.0, 1.0) for _ in range(500)} == {gp.MUTATION}
    assert {gp.choose_operator(rng, 0.0, 0.0) for _ in range(500)} == {gp.REPRODUCTION}


def test_initial_population_puts_seeds_first():
    cross_entropy = Node("mul", (MINUS_ONE, Node("mul", (Y, Node("log", (F,))))))
    seeds = [cross_entropy, Node("square", (Node("sub", (Y, F)),))]
    for seed in range(50):
        pop = gp.initial_population(random.Random(seed), 10, seeds)
        assert len(pop) == 10
        assert pop[0] is seeds[0] and pop[1] is seeds[1]
        assert all(t.has_both_variables() and 2 <= t.height() <= 4 for t in pop[2:])


def test_initial_population_validates_seeds():
    with pytest.raises(ValueError):
        gp.initial_population(random.Random(0), 1, [Node("add", (Y, F)), Node("sub", (Y, F))])
    with pytest.raises(ValueError):
        gp.initial_population(random.Random(0), 3, [Node("log", (Y,))])


def test_next_generation_invariants():
    for seed in SEEDS:
        rng = random.Random(seed)
        population = gp.initial_population(rng, 20)
        fitnesses = random_fitnesses(rng, 20)
        for _ in range(2):
            population = gp.next_generation(rng, population, fitnesses, max_height=6)
            fitnesses = random_fitnesses(rng, 20)
            assert len(population) == 20
            assert all(t.has_both_variables() and t.height() <= 6 for t in population)


@pytest.mark.parametrize(("cx", "mut"), [(1.0, 0.0), (0.0, 1.0), (0.7, 0.25)])
def test_next_generation_height_limit_with_parents_near_the_limit(cx, mut):
    for seed in SEEDS:
        rng = random.Random(seed)
        population = [deep_tree(rng, rng.choice([9, 10])) for _ in range(6)]
        fitnesses = random_fitnesses(rng, 6)
        offspring = gp.next_generation(
            rng, population, fitnesses, crossover_rate=cx, mutation_rate=mut, max_height=10,
            mutation_min_height=2, mutation_max_height=4,
        )
        assert len(offspring) == 6
        assert all(t.height() <= 10 and t.has_both_variables() for t in offspring)


def test_crossover_and_mutation_of_deep_trees_can_exceed_the_limit():
    # the static limit in next_generation is needed: the raw operators do overshoot
    over = 0
    for seed in range(100):
        rng = random.Random(seed)
        a, b = deep_tree(rng, 10), deep_tree(rng, 10)
        over += max(gp.one_point_crossover(rng, a, b), key=Node.height).height() > 10
        over += gp.uniform_subtree_mutation(rng, a, 2, 4).height() > 10
    assert over > 0


def test_next_generation_keeps_elites_unchanged():
    for seed in SEEDS:
        rng = random.Random(seed)
        population = gp.initial_population(rng, 20)
        fitnesses = random_fitnesses(rng, 20)
        offspring = gp.next_generation(rng, population, fitnesses, elitism_rate=0.1)
        expected = gp.elites(population, fitnesses, 2)
        assert offspring[0] is expected[0] and offspring[1] is expected[1]


def test_next_generation_reproduction_only_copies_tournament_winners():
    for seed in range(50):
        rng = random.Random(seed)
        population = gp.initial_population(rng, 10)
        fitnesses = [float(i) for i in range(10)]
        offspring = gp.next_generation(
            rng, population, fitnesses, crossover_rate=0.0, mutation_rate=0.0, elitism_rate=0.0,
            tournament_size=200,
        )
        assert all(t is population[0] for t in offspring)  # huge tournaments always find the best


def test_next_generation_is_deterministic_per_seed():
    def run(seed):
        rng = random.Random(seed)
        population = gp.initial_population(rng, 15)
        history = []
        for _ in range(3):
            population = gp.next_generation(rng, population, random_fitnesses(rng, 15))
            history.append(tuple(population))
        return history

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_same_seed_same_trees_different_seed_different_trees():
    assert gp.ramped_half_and_half(random.Random(5), 30) == gp.ramped_half_and_half(random.Random(5), 30)
    assert gp.ramped_half_and_half(random.Random(5), 30) != gp.ramped_half_and_half(random.Random(6), 30)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"crossover_rate": -0.1}, "crossover_rate"),
        ({"crossover_rate": 1.5, "mutation_rate": 0.0}, "crossover_rate"),
        ({"mutation_rate": 1.2, "crossover_rate": 0.0}, "mutation_rate"),
        ({"mutation_rate": math.nan}, "mutation_rate"),
        ({"elitism_rate": 2.0}, "elitism_rate"),
        ({"crossover_rate": 0.8, "mutation_rate": 0.3}, "crossover_rate \\+ mutation_rate"),
        ({"tournament_size": 0}, "tournament_size"),
        ({"mutation_min_height": 3, "mutation_max_height": 1}, "mutation_min_height"),
        ({"max_height": 0}, "max_height"),
    ],
)
def test_next_generation_validates_arguments(kwargs, name):
    population = [Node("add", (Y, F)), Node("sub", (Y, F))]
    with pytest.raises(ValueError, match=name):
        gp.next_generation(random.Random(0), population, [1.0, 2.0], **kwargs)


def test_next_generation_rejects_too_tall_population_and_mismatched_fitnesses():
    tall = chain(["abs"] * 5, Node("add", (Y, F)))
    with pytest.raises(ValueError, match="max_height"):
        gp.next_generation(random.Random(0), [tall], [1.0], max_height=4)
    with pytest.raises(ValueError):
        gp.next_generation(random.Random(0), [tall], [1.0, 2.0])
