"""The Pareto front as pure functions: sizes counted from prefix text, one point per canonical key,
the non-dominated set (ties included), the cap on plotted points and the chart's geometry."""

import math
import random

import pytest

from lfl_web.experiments.results.pareto import (
    BOTTOM,
    HEIGHT,
    LEFT,
    RIGHT,
    TOP,
    WIDTH,
    ParetoPoint,
    best_per_key,
    expression_size,
    fitness_scale,
    log_ticks,
    nice_ticks,
    pareto_chart,
    pareto_view,
    split_front,
    tick_label,
)


def row(key, fitness, expression=None, generation=0, latex=""):
    """A candidate row as the query yields it: (canonical_key, expression, latex, fitness, generation)."""
    return (key, expression or key, latex, fitness, generation)


def point(size, fitness, key=None):
    return ParetoPoint(key or f"k{size}_{fitness}", "f", "", fitness, size, 0)


def keys(points):
    return [p.canonical_key for p in points]


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("text", [
    "f", "-1", "mul(-1, mul(y, log(f)))", "square(sub(y, f))", "add(mul(y, f), div(1, add(f, -1)))",
    "sub(  y ,f )", "tanh(sqrt(abs(max(f, min(y, sign(f))))))",
])
def test_the_size_of_a_prefix_string_is_the_node_count_of_its_tree(text):
    from search_engine.expr.tree import parse

    assert expression_size(text) == parse(text).size()


def test_every_known_loss_has_its_tree_size():
    from search_engine.expr.tree import KNOWN_LOSSES, to_prefix

    for tree in KNOWN_LOSSES.values():
        assert expression_size(to_prefix(tree)) == tree.size()


def test_numbers_count_once_whatever_their_form():
    assert expression_size("add(f, 1.5e-3)") == 3
    assert expression_size("mul(+2, -0.5)") == 3
    assert expression_size("max(f1, y_2)") == 3  # names may hold digits and underscores
    assert expression_size("") == 0


# ----------------------------------------------------------------------------- one point per key


def test_a_key_seen_many_times_is_one_point_at_its_best_fitness():
    points = best_per_key([row("a", 0.5, generation=0), row("a", 0.2, generation=3), row("a", 0.4, generation=5)])
    assert [(p.canonical_key, p.fitness, p.generation) for p in points] == [("a", 0.2, 3)]


def test_equal_fitness_under_one_key_keeps_the_smaller_expression_then_the_earlier():
    points = best_per_key([row("a", 0.2, "add(f, mul(1, y))", 1), row("a", 0.2, "add(f, y)", 4),
                           row("a", 0.2, "add(y, f)", 2)])
    assert [(p.expression, p.size, p.generation) for p in points] == [("add(y, f)", 3, 2)]


def test_rejected_and_diverged_candidates_are_not_points():
    points = best_per_key([row("a", None), row("b", math.nan), row("c", math.inf), row("d", 0.3)])
    assert keys(points) == ["d"]
    assert pareto_view([row("a", None)]).front == ()


# ----------------------------------------------------------------------------- the front


def test_a_single_point_is_the_whole_front():
    view = pareto_view([row("a", 0.7)])
    assert keys(view.front) == ["a"] and view.dominated == () and view.distinct == 1


def test_the_front_holds_the_points_no_other_beats_in_both_and_runs_simplest_first():
    points = [point(3, 0.5, "small"), point(5, 0.3, "mid"), point(9, 0.1, "big"),
              point(5, 0.4, "beaten_by_mid"), point(10, 0.2, "beaten_by_big"), point(4, 0.5, "beaten_by_small")]
    front, dominated = split_front(points)
    assert keys(front) == ["small", "mid", "big"]
    assert keys(dominated) == ["beaten_by_big", "beaten_by_mid", "beaten_by_small"]  # best fitness first


def test_equal_size_or_equal_fitness_dominates_when_the_other_is_worse():
    front, dominated = split_front([point(4, 0.3, "a"), point(4, 0.2, "b"), point(6, 0.2, "c")])
    assert keys(front) == ["b"] and sorted(keys(dominated)) == ["a", "c"]


def test_points_equal_in_both_size_and_fitness_are_all_on_the_front():
    front, dominated = split_front([point(4, 0.2, "b"), point(4, 0.2, "a"), point(2, 0.5, "c"), point(4, 0.3, "d")])
    assert keys(front) == ["c", "a", "b"] and keys(dominated) == ["d"]


def test_the_front_agrees_with_the_definition_on_random_points():
    rng = random.Random(7)
    points = [point(rng.randint(1, 12), rng.choice([0.1, 0.2, 0.3, 0.4, 0.5]), f"p{i}") for i in range(200)]

    def dominated_by_another(p):
        return any(q.size <= p.size and q.fitness <= p.fitness and (q.size, q.fitness) != (p.size, p.fitness)
                   for q in points)

    front, dominated = split_front(points)
    assert sorted(keys(front)) == sorted(p.canonical_key for p in points if not dominated_by_another(p))
    assert len(front) + len(dominated) == len(points)
    assert [p.size for p in front] == sorted(p.size for p in front)
    assert all(a.fitness >= b.fitness for a, b in zip(front, front[1:]))


def test_the_plotted_points_off_the_front_are_capped_at_the_best():
    rows = [row("front", 0.01, "f")] + [row(f"k{i}", 0.1 + i / 100, "add(f, y)") for i in range(10)]
    view = pareto_view(rows, limit=3)
    assert keys(view.front) == ["front"]
    assert keys(view.dominated) == ["k0", "k1", "k2"] and view.omitted == 7 and view.distinct == 11
    with pytest.raises(ValueError, match="limit"):
        pareto_view(rows, limit=-1)


# ----------------------------------------------------------------------------- geometry


def test_points_land_inside_the_plot_with_better_fitness_lower_and_bigger_size_to_the_right():
    chart = pareto_chart(pareto_view([row("a", 0.5, "f"), row("b", 0.2, "add(f, y)"), row("c", 0.6, "add(f, y)")]))
    small, big = chart.front
    assert (small.loss.canonical_key, big.loss.canonical_key) == ("a", "b")
    assert small.x < big.x and small.y < big.y  # SVG y grows downwards: the better one is drawn lower
    for p in chart.front + chart.dominated:
        assert LEFT <= p.x <= WIDTH - RIGHT and TOP <= p.y <= chart.bottom
    assert chart.front_path == f"M{small.x},{small.y}H{big.x}V{big.y}"
    assert not chart.log_fitness and chart.baseline_y is None


def test_fitness_spanning_decades_is_drawn_on_a_log_scale_and_a_narrow_range_linearly():
    assert fitness_scale([1e-4, 0.5]).log
    assert not fitness_scale([0.1, 0.3]).log
    assert not fitness_scale([0.0, 0.5]).log  # a zero has no logarithm
    scale = fitness_scale([1e-4, 1e-2, 1.0])
    assert scale(1e-2) == pytest.approx((scale(1e-4) + scale(1.0)) / 2, abs=0.1)  # equal steps per decade


def test_a_linear_axis_of_non_negative_values_stops_at_zero_and_a_flat_one_still_has_height():
    assert fitness_scale([0.0, 0.4]).lo == 0.0
    flat = fitness_scale([0.3, 0.3])
    assert flat.lo < 0.3 < flat.hi and flat(0.3) == pytest.approx((HEIGHT - BOTTOM + TOP) / 2, abs=0.1)


def test_the_baseline_is_drawn_and_kept_in_range():
    chart = pareto_chart(pareto_view([row("a", 0.1, "f"), row("b", 0.05, "add(f, y)")]), baseline_fitness=0.9)
    assert TOP <= chart.baseline_y < min(p.y for p in chart.front)  # worse than both: above them
    assert pareto_chart(pareto_view([row("a", 0.1)]), baseline_fitness=math.nan).baseline_y is None


def test_an_empty_view_draws_nothing():
    chart = pareto_chart(pareto_view([]), baseline_fitness=0.3)
    assert chart.empty and chart.front_path == "" and chart.fitness_ticks == ()


def test_ticks_are_round_values_inside_the_range():
    assert nice_ticks(0.0, 1.0, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.0, 3.0, 6, integer=True) == [0.0, 1.0, 2.0, 3.0]
    assert log_ticks(1e-5, 2.0) == [1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert log_ticks(0.03, 0.6) == [0.05, 0.1, 0.2, 0.5]
    assert [tick_label(v) for v in (0.0, 0.25, 12.0, 1e-5)] == ["0", "0.25", "12", "1e-05"]
