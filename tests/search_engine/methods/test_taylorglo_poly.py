"""TaylorGLO's polynomial as an lfl weighted expression, checked against a float64 reference written from the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from search_engine.expr import primitives as P
from search_engine.expr.tree import parse, to_prefix
from search_engine.expr.weighted import compile_weighted, edge_count, make_weighted_loss
from search_engine.methods.taylorglo_poly import (
    N_PARAMETERS,
    POLYNOMIAL_EXPRESSION,
    candidate_key,
    polynomial_latex,
    polynomial_tree,
)
from search_engine.population.training import population_loss


def reference_polynomial(theta, y, f):
    """The third-order TaylorGLO loss, elementwise, in float64 numpy: the paper's formula term by term."""
    c_y, c_f, t2, t3, t4, t5, t6, t7 = (float(p) for p in theta)
    y, f = np.asarray(y, dtype=np.float64), np.asarray(f, dtype=np.float64)
    u, v = f - c_f, y - c_y
    return (t2 * u + t3 / 2 * u**2 + t4 / 6 * u**3
            + t5 * v * u + t6 / 2 * v * u**2 + t7 / 2 * v**2 * u)


def reference_loss(theta, outputs: torch.Tensor, targets: torch.Tensor, kind: str, reduction: str = "mean"):
    """The reference on logits / targets as lfl's expression losses see them: summed over classes, reduced over the batch."""
    out = outputs.detach().double().numpy()
    if kind == "classification":
        e = np.exp(out - out.max(axis=1, keepdims=True))
        f = e / e.sum(axis=1, keepdims=True)
        y = np.eye(out.shape[1])[targets.numpy()]
    else:
        f = out.reshape(len(out), -1)
        y = targets.double().numpy().reshape(f.shape)
    per_sample = reference_polynomial(theta, y, f).sum(axis=1)  # (B,)
    return {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]


def random_thetas(n: int, seed: int) -> list[tuple[float, ...]]:
    rng = np.random.default_rng(seed)
    return [tuple(float(v) for v in rng.normal(scale=1.5, size=N_PARAMETERS)) for _ in range(n)]


def weights64(theta) -> tuple:
    tree, weights = polynomial_tree(theta)
    return tree, torch.tensor(weights, dtype=torch.float64)


@pytest.mark.parametrize("theta", random_thetas(5, 0))
def test_elementwise_polynomial_equals_the_reference(theta):
    g = torch.Generator().manual_seed(1)
    y = torch.rand(64, 7, generator=g, dtype=torch.float64) * 4 - 2  # (B, C): values around both centres
    f = torch.rand(64, 7, generator=g, dtype=torch.float64) * 4 - 2
    tree, w = weights64(theta)
    got = compile_weighted(tree)(w, y, f)
    np.testing.assert_allclose(got.numpy(), reference_polynomial(theta, y, f), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_classification_loss_equals_the_reference(reduction):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(32, 10, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, 10, (32,), generator=g)
    for theta in random_thetas(3, 1):
        tree, w = weights64(theta)
        got = make_weighted_loss(tree, "classification", reduction)(w, logits, labels)
        np.testing.assert_allclose(got.numpy(), reference_loss(theta, logits, labels, "classification", reduction),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(16,), (16, 3)])
def test_regression_loss_equals_the_reference(shape):
    g = torch.Generator().manual_seed(3)
    outputs = torch.randn(*shape, generator=g, dtype=torch.float64)
    targets = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
    for theta in random_thetas(3, 2):
        tree, w = weights64(theta)
        got = make_weighted_loss(tree, "regression")(w, outputs, targets)
        np.testing.assert_allclose(got.item(), reference_loss(theta, outputs, targets, "regression"), rtol=1e-12)


def test_the_population_program_used_in_training_gives_the_reference_values_and_gradients():
    thetas = random_thetas(4, 3)
    g = torch.Generator().manual_seed(4)
    logits = (torch.randn(4, 24, 10, generator=g, dtype=torch.float64) * 2).requires_grad_(True)  # (P, B, C)
    labels = torch.randint(0, 10, (24,), generator=g)
    trees, weights = zip(*(weights64(t) for t in thetas))
    values = population_loss(list(trees), "classification", list(weights))(logits, labels)  # (P,)
    (grad,) = torch.autograd.grad(values.sum(), logits)
    for p, theta in enumerate(thetas):
        assert values[p].item() == pytest.approx(reference_loss(theta, logits[p], labels, "classification"), rel=1e-12)
        # the reference's gradient by autograd through a torch transcription of the same formula
        member = logits[p].detach().clone().requires_grad_(True)
        f = torch.softmax(member, dim=-1)
        y = torch.nn.functional.one_hot(labels, 10).double()
        c_y, c_f, t2, t3, t4, t5, t6, t7 = theta
        u, v = f - c_f, y - c_y
        ref = (t2 * u + t3 / 2 * u**2 + t4 / 6 * u**3 + t5 * v * u + t6 / 2 * v * u**2 + t7 / 2 * v**2 * u)
        (want,) = torch.autograd.grad(ref.sum(dim=-1).mean(), member)
        torch.testing.assert_close(grad[p], want, rtol=1e-10, atol=1e-12)


def test_one_fixed_tree_with_only_the_constant_one_carries_every_parameter_in_its_weights():
    thetas = random_thetas(3, 4)
    trees = {polynomial_tree(t)[0] for t in thetas}
    assert len(trees) == 1
    (tree,) = trees
    assert to_prefix(tree) == POLYNOMIAL_EXPRESSION and parse(POLYNOMIAL_EXPRESSION) == tree
    constants = {n.op for _, n in tree.walk() if n.op in P.CONSTANTS}
    assert constants == {"1"}
    weights = [polynomial_tree(t)[1] for t in thetas]
    assert all(len(w) == edge_count(tree) for w in weights)
    assert len(set(weights)) == 3


def test_each_term_alone_is_its_monomial():
    f = np.linspace(-1.0, 2.0, 7)
    y = np.linspace(1.5, -0.5, 7)
    u, v = f - 0.25, y + 0.5
    factors = {2: u, 3: u**2 / 2, 4: u**3 / 6, 5: v * u, 6: v * u**2 / 2, 7: v**2 * u / 2}
    for k, want in factors.items():
        theta = [-0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        theta[k] = 1.0
        tree, w = weights64(theta)
        got = compile_weighted(tree)(w, torch.tensor(y), torch.tensor(f))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-13, atol=1e-15, err_msg=f"t{k}")


def test_keys_are_distinct_per_parameter_vector_and_bad_lengths_are_refused():
    a, b = random_thetas(2, 5)
    assert candidate_key(a) == candidate_key(list(a)) != candidate_key(b)
    with pytest.raises(ValueError, match="TaylorGLO has 8 parameters"):
        polynomial_tree(a[:7])


def test_latex_writes_the_polynomial_with_rounded_numbers():
    text = polynomial_latex([0.5, -0.25, 1.0, 2.0, -3.0, 0.125, 4.0, 6.0])
    assert text == (
        r"1 \cdot \left(f(x) + 0.25\right) + 1 \cdot \left(f(x) + 0.25\right)^{2} + "
        r"\left(-0.5\right) \cdot \left(f(x) + 0.25\right)^{3} + "
        r"0.125 \cdot \left(y - 0.5\right) \cdot \left(f(x) + 0.25\right) + "
        r"2 \cdot \left(y - 0.5\right) \cdot \left(f(x) + 0.25\right)^{2} + "
        r"3 \cdot \left(y - 0.5\right)^{2} \cdot \left(f(x) + 0.25\right)"
    )
