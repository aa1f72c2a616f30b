"""Configuration sections of the methods other than EvoMAL's (torch-free; read by `config`).

EvoMAL and GP-LFL are configured by the shared sections (`search`, `local_search`, ...); GP-LFL
is EvoMAL with local search off. Each dataclass states its paper's / the reference's defaults.
`check_ranges(config, need)` adds the range errors of the selected method's section.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ML3Settings:
    """ML3 (Bechtle et al., ICPR 2020), offline variant: a network loss learned by meta-gradients.

    The reference runs it with the settings of EvoMAL's local search: 250 meta steps, Adam with
    learning rate 1e-3 on the loss network, one differentiable inner SGD step per meta step.
    """

    meta_steps: int = 250
    inner_steps: int = 1  # K differentiable SGD steps per meta step (inner lr = training.lr)
    meta_lr: float = 1e-3  # Adam on the loss network's weights
    hidden_units: int = 50  # reference: 2 -> 50 -> 50 -> 1, no bias, ReLU, softplus output
    hidden_layers: int = 2
    batch_size: int = 128  # inner training and validation batch of a meta step
    report_every: int = 25  # meta steps per reported "generation" (a point of the meta-step curve)


@dataclass(frozen=True)
class TaylorGLOSettings:
    """TaylorGLO (Gonzalez & Miikkulainen, GECCO 2021): CMA-ES over a 3rd-order Taylor polynomial's
    8 parameters (centres for f and y, six coefficients); fitness = validation error after training."""

    population_size: int = 20  # CMA-ES candidates per generation (lambda)
    generations: int = 50
    sigma: float = 1.2  # CMA-ES initial step size
    # hall_of_fame_size and training come from the shared sections (search, training)


METHOD_SECTIONS = {"ml3": "ml3", "taylorglo": "taylorglo"}  # method -> its own configuration section


def check_ranges(config, need) -> None:
    """Record (through `need(ok, field, message)`) the range errors of the selected method's section."""
    if config.method == "ml3":
        m = config.ml3
        for name in ("meta_steps", "inner_steps", "hidden_units", "hidden_layers", "batch_size", "report_every"):
            value = getattr(m, name)
            need(value >= 1, f"ml3.{name}", f"must be at least 1, got {value}")
        need(m.meta_lr > 0, "ml3.meta_lr", f"must be positive, got {m.meta_lr}")
    if config.method == "taylorglo":
        t = config.taylorglo
        need(t.population_size >= 2, "taylorglo.population_size", f"must be at least 2, got {t.population_size}")
        need(t.generations >= 1, "taylorglo.generations", f"must be at least 1, got {t.generations}")
        need(t.sigma > 0, "taylorglo.sigma", f"must be positive, got {t.sigma}")


def effective(config):
    """`config` as its method runs it: GP-LFL is the evolutionary search with local search off."""
    if config.method == "gplfl" and config.local_search.mode != "off":
        import dataclasses

        return dataclasses.replace(config, local_search=dataclasses.replace(config.local_search, mode="off"))
    return config
