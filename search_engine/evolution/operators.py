"""Genetic programming over loss expression trees (the EvoMAL outer loop's variation step).

Every function here is pure: it takes an explicit `random.Random` instance `rng`
and returns new trees (trees are immutable `Node`s, so "copying" a tree means
reusing it). Fitness is minimised: lower is better, and `None` (a rejected or
non-finite loss) ranks worst, as does any non-finite float.

One generation (`next_generation`) is: the elites are carried over unchanged,
then each remaining offspring is bred by exactly one operator, chosen by one
draw `r` in [0, 1): `r < crossover_rate` -> one-point crossover,
`r < crossover_rate + mutation_rate` -> uniform subtree mutation, otherwise
reproduction (a copy). Parents come from tournament selection. After each
operator the static height limit replaces a too-tall offspring by its parent,
and `repair` makes sure the offspring mentions both y and f(x).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from search_engine.expr import primitives as P
from search_engine.expr.tree import Node, Path

#: A fitness (lower is better), or a tuple ranked in order (fitness, tie-breakers...); None = no fitness.
Fitness = float | tuple[float, ...] | None

#: Operator names returned by `choose_operator`.
CROSSOVER = "crossover"
MUTATION = "mutation"
REPRODUCTION = "reproduction"

_METHODS = ("grow", "full")
_OPERATORS: tuple[str, ...] = (*P.BINARY, *P.UNARY)
_VARIABLES: tuple[str, ...] = (P.TARGET, P.PREDICTION)


# --------------------------------------------------------------------------- tree generation


def _random_terminal(rng: random.Random) -> Node:
    """A terminal chosen uniformly among `TERMINALS`."""
    return Node(rng.choice(P.TERMINALS))


def _with_children(op: str, make_child: Callable[[], Node]) -> Node:
    """Node `op` whose children are built by calling `make_child()` once per argument."""
    return Node(op, tuple(make_child() for _ in range(P.arity(op))))


def _full(rng: random.Random, height: int) -> Node:
    """A tree whose every branch has exactly `height` edges."""
    if height == 0:
        return _random_terminal(rng)
    return _with_children(rng.choice(_OPERATORS), lambda: _full(rng, height - 1))


def _grow(rng: random.Random, height: int, min_height: int, depth: int = 0) -> Node:
    """A tree of height <= `height`; no terminal is placed above depth `min_height`."""
    if depth >= height:
        return _random_terminal(rng)
    names = _OPERATORS if depth < min_height else _OPERATORS + P.TERMINALS
    op = rng.choice(names)
    return _with_children(op, lambda: _grow(rng, height, min_height, depth + 1))


def random_tree(rng: random.Random, height: int, method: str, *, min_height: int = 1) -> Node:
    """A random tree built by the "full" or "grow" method.

    full: operators down to depth `height`, terminals exactly there, so every
    branch has `height` edges. grow: each node is drawn uniformly among all
    operators and terminals until depth `height` (where a terminal is forced);
    above depth `min_height` only operators are drawn, so the root is an operator
    when height >= 1 and the tree's height is in [min(min_height, height), height].
    """
    if height < 0:
        raise ValueError(f"height must be >= 0, got {height}")
    if method == "full":
        return _full(rng, height)
    if method == "grow":
        return _grow(rng, height, max(min_height, 1))
    raise ValueError(f"method must be 'grow' or 'full', got {method!r}")


def ramped_half_and_half(rng: random.Random, n: int, min_height: int = 2, max_height: int = 4) -> list[Node]:
    """`n` repaired trees: heights cycle over [min_height, max_height], each full cycle
    alternating between grow and full (grow trees keep all leaves at depth >= min_height),
    so every tree's height lies in [min_height, max_height]."""
    if not 1 <= min_height <= max_height:
        raise ValueError(f"need 1 <= min_height <= max_height, got {min_height}, {max_height}")
    heights = range(min_height, max_height + 1)
    trees = []
    for i in range(n):
        method = _METHODS[(i // len(heights)) % 2]
        tree = random_tree(rng, heights[i % len(heights)], method, min_height=min_height)
        trees.append(repair(rng, tree, max_height))
    return trees


# --------------------------------------------------------------------------- repair


def _leaf_paths(tree: Node) -> list[Path]:
    """Paths of all terminals, in prefix order."""
    return [p for p, node in tree.walk() if node.is_terminal]


def _variable_pair(rng: random.Random) -> Node:
    """A random binary operator applied to (y, f) in random order."""
    args = [Node(P.TARGET), Node(P.PREDICTION)]
    rng.shuffle(args)
    return Node(rng.choice(P.BINARY), tuple(args))


def _replaceable_leaves(rng: random.Random, tree: Node, leaves: list[Path]) -> list[Path]:
    """Leaves that may be overwritten: all of them except one kept occurrence of each variable present."""
    keep = []
    for var in _VARIABLES:
        occurrences = [p for p in leaves if tree.at(p).op == var]
        if occurrences:
            keep.append(rng.choice(occurrences))
    return [p for p in leaves if p not in keep]


def repair(rng: random.Random, tree: Node, max_height: int) -> Node:
    """A tree that contains both y and f(x), derived from `tree`.

    A tree that already has both is returned as is (the same object). Otherwise
    randomly chosen distinct leaves are overwritten with the missing variable(s),
    never removing the last occurrence of the variable already present; the
    height does not change. When there are not enough leaves (a lone terminal or
    a chain of unary operators) the leaf becomes `op(y, f)` for a random binary
    op; where that would exceed `max_height` the ancestor at depth max_height - 1
    is replaced instead. For an input of height <= max_height the result's height
    is <= max_height.
    """
    if max_height < 1:
        raise ValueError(f"max_height must be >= 1 to fit both variables, got {max_height}")
    if tree.has_both_variables():
        return tree
    present = tree.terminals()
    missing = [v for v in _VARIABLES if v not in present]
    leaves = _leaf_paths(tree)
    pool = _replaceable_leaves(rng, tree, leaves)
    if len(pool) >= len(missing):
        rng.shuffle(missing)
        for path, var in zip(rng.sample(pool, len(missing)), missing, strict=True):
            tree = tree.replace(path, Node(var))
        return tree
    # A single leaf that must supply a missing variable while keeping any present one.
    (leaf_path,) = leaves
    path = leaf_path[: min(len(leaf_path), max_height - 1)]
    return tree.replace(path, _variable_pair(rng))


# --------------------------------------------------------------------------- selection


def _rank_key(fitness: Fitness) -> tuple[int, float, ...]:
    """Sort key: finite fitnesses ascending (a tuple's later items break ties), then None / non-finite last."""
    values = fitness if isinstance(fitness, tuple) else (fitness,)
    if not values or values[0] is None or not math.isfinite(values[0]):
        return (1, 0.0)
    return (0, *(float(v) for v in values))


def _check_fitnesses(population: Sequence[Node], fitnesses: Sequence[Fitness]) -> None:
    """Raise ValueError unless there is exactly one fitness per individual."""
    if len(population) != len(fitnesses):
        raise ValueError(f"{len(population)} individuals but {len(fitnesses)} fitnesses")


def tournament_select(
    rng: random.Random, population: Sequence[Node], fitnesses: Sequence[Fitness], k: int, size: int = 4
) -> list[Node]:
    """`k` winners, each the best of `size` individuals drawn with replacement
    (among equally fit contestants the first drawn wins)."""
    _check_fitnesses(population, fitnesses)
    if size < 1:
        raise ValueError(f"tournament size must be >= 1, got {size}")
    if k > 0 and not population:
        raise ValueError("cannot select from an empty population")
    winners = []
    for _ in range(k):
        contestants = [rng.randrange(len(population)) for _ in range(size)]
        best = min(contestants, key=lambda i: _rank_key(fitnesses[i]))
        winners.append(population[best])
    return winners


def elites(population: Sequence[Node], fitnesses: Sequence[Fitness], n: int) -> list[Node]:
    """The `n` best individuals, best first (ties keep population order; None ranks worst)."""
    _check_fitnesses(population, fitnesses)
    order = sorted(range(len(population)), key=lambda i: (_rank_key(fitnesses[i]), i))
    return [population[i] for i in order[: max(n, 0)]]


def n_elites(population_size: int, elitism_rate: float) -> int:
    """round(population_size * elitism_rate), halves rounded up, at least 1 when the rate is > 0
    (and never more than the population)."""
    _check_rate("elitism_rate", elitism_rate)
    if population_size <= 0 or elitism_rate == 0:
        return 0
    return min(population_size, max(1, math.floor(population_size * elitism_rate + 0.5)))


# --------------------------------------------------------------------------- variation


def within_limit(tree: Node, max_height: int = 10) -> bool:
    """True if the tree is no taller than `max_height`."""
    return tree.height() <= max_height


def _limited(offspring: Node, parent: Node, max_height: int) -> Node:
    """The static height limit: a too-tall offspring is replaced by its parent."""
    return offspring if within_limit(offspring, max_height) else parent


def one_point_crossover(rng: random.Random, a: Node, b: Node) -> tuple[Node, Node]:
    """Swap a subtree of `a` with a subtree of `b`, both points uniform over all nodes.

    Two lone terminals are returned unchanged (trees are immutable, so these are the copies).
    """
    if a.is_terminal and b.is_terminal:
        return a, b
    pa, pb = rng.choice(a.paths()), rng.choice(b.paths())
    return a.replace(pa, b.at(pb)), b.replace(pb, a.at(pa))


def uniform_subtree_mutation(
    rng: random.Random, tree: Node, min_height: int = 0, max_height: int = 2
) -> Node:
    """Replace the subtree at a uniformly chosen node by a random grow or full tree.

    A height h is drawn uniformly from [min_height, max_height]; a full tree has
    height h, a grow tree (no terminal above depth min_height) a height in
    [min_height, h], so the new subtree's height always lies in the range.
    """
    if not 0 <= min_height <= max_height:
        raise ValueError(f"need 0 <= min_height <= max_height, got {min_height}, {max_height}")
    path = rng.choice(tree.paths())
    height = rng.randint(min_height, max_height)
    new = random_tree(rng, height, rng.choice(_METHODS), min_height=min_height)
    return tree.replace(path, new)


# --------------------------------------------------------------------------- generations


def _check_rate(name: str, value: float) -> None:
    """Raise ValueError naming `name` unless 0 <= value <= 1."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def choose_operator(rng: random.Random, crossover_rate: float, mutation_rate: float) -> str:
    """One draw r in [0, 1): crossover if r < crossover_rate, mutation if
    r < crossover_rate + mutation_rate, otherwise reproduction."""
    r = rng.random()
    if r < crossover_rate:
        return CROSSOVER
    if r < crossover_rate + mutation_rate:
        return MUTATION
    return REPRODUCTION


def initial_population(
    rng: random.Random, size: int, seeds: Sequence[Node] = (), min_height: int = 2, max_height: int = 4
) -> list[Node]:
    """The seed trees (known losses, kept as given) followed by ramped half-and-half trees, `size` in all."""
    if len(seeds) > size:
        raise ValueError(f"{len(seeds)} seeds do not fit in a population of {size}")
    for seed in seeds:
        if not seed.has_both_variables():
            raise ValueError(f"seed tree lacks y or f: {seed}")
    return list(seeds) + ramped_half_and_half(rng, size - len(seeds), min_height, max_height)


def _offspring(
    rng: random.Random,
    operator: str,
    population: Sequence[Node],
    fitnesses: Sequence[Fitness],
    tournament_size: int,
    max_height: int,
    mutation_heights: tuple[int, int],
) -> Node:
    """One offspring bred by `operator` from tournament-selected parents, height-limited and repaired.

    Crossover keeps the first child of the pair (the first parent with the second's subtree).
    """
    if operator == CROSSOVER:
        a, b = tournament_select(rng, population, fitnesses, 2, tournament_size)
        child = _limited(one_point_crossover(rng, a, b)[0], a, max_height)
    else:
        (parent,) = tournament_select(rng, population, fitnesses, 1, tournament_size)
        child = parent
        if operator == MUTATION:
            child = _limited(uniform_subtree_mutation(rng, parent, *mutation_heights), parent, max_height)
    return repair(rng, child, max_height)


def next_generation(
    rng: random.Random,
    population: Sequence[Node],
    fitnesses: Sequence[Fitness],
    *,
    crossover_rate: float = 0.7,
    mutation_rate: float = 0.25,
    tournament_size: int = 4,
    elitism_rate: float = 0.05,
    max_height: int = 10,
    mutation_min_height: int = 0,
    mutation_max_height: int = 2,
) -> list[Node]:
    """The next population, same size: the `n_elites` best first (unchanged), then offspring
    each bred by one operator picked by `choose_operator`. Every tree has both y and f
    and height <= max_height (the input population must respect max_height)."""
    _check_rate("crossover_rate", crossover_rate)
    _check_rate("mutation_rate", mutation_rate)
    _check_rate("elitism_rate", elitism_rate)
    if crossover_rate + mutation_rate > 1.0:
        raise ValueError(f"crossover_rate + mutation_rate must be <= 1, got {crossover_rate + mutation_rate}")
    if tournament_size < 1:
        raise ValueError(f"tournament_size must be >= 1, got {tournament_size}")
    if max_height < 1:
        raise ValueError(f"max_height must be >= 1, got {max_height}")
    if not 0 <= mutation_min_height <= mutation_max_height:
        raise ValueError(
            f"need 0 <= mutation_min_height <= mutation_max_height, got {mutation_min_height}, "
            f"{mutation_max_height}"
        )
    _check_fitnesses(population, fitnesses)
    too_tall = [t for t in population if not within_limit(t, max_height)]
    if too_tall:
        raise ValueError(f"{len(too_tall)} individual(s) taller than max_height={max_height}")
    best = elites(population, fitnesses, n_elites(len(population), elitism_rate))
    kept = [repair(rng, t, max_height) for t in best]  # a no-op for trees that have y and f
    mutation_heights = (mutation_min_height, mutation_max_height)
    bred = [
        _offspring(
            rng, choose_operator(rng, crossover_rate, mutation_rate), population, fitnesses,
            tournament_size, max_height, mutation_heights,
        )
        for _ in range(len(population) - len(kept))
    ]
    return kept + bred
