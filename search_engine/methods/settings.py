"""Configuration sections of the methods other than EvoMAL's (torch-free; read by `config`).

EvoMAL and GP-LFL are configured by the shared sections (`search`, `local_search`, ...); GP-LFL
is EvoMAL with local search off. Each dataclass states its paper's / the reference's defaults.
Each field's bounds and words sit beside it (`fields.setting`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from search_engine.fields import MAX_BATCH, MAX_POPULATION, POSITIVE_META_RATE, FloatRange, setting

#: CMA-ES (cmaes) with fewer than 4 candidates has a single parent and divides by zero in its
#: covariance learning rates.
TAYLORGLO_MIN_POPULATION = 4
#: |mean| and sigma at most this (limits.FLOAT_RANGES): further out every sampled polynomial
#: diverges in training, and cmaes refuses parameters beyond 1e32.
TAYLORGLO_MAX_START = 1_000.0


@dataclass(frozen=True)
class ML3Settings:
    """ML3 (Bechtle et al., ICPR 2020), offline variant: a network loss learned by meta-gradients.

    The defaults are those of the EvoMAL paper's reference ML3 runner (Raymond et al., TPAMI 2023),
    which uses the settings of EvoMAL's local search: 250 meta steps, Adam with learning rate 1e-3
    on the loss network, one differentiable inner SGD step per meta step on batches of 128, and the
    network 2 -> 50 -> 50 -> 1 of Bechtle et al. The reference scores the network on validation
    data every 10% of the meta steps and keeps the best: report_every 25.
    """

    meta_steps: int = setting(250, label="Meta steps", at_least=1, at_most=100_000,
                              help="Adam steps on the loss network's weights, each through freshly unrolled training.",
                              reason="as local_search.meta_steps; the reference: 250")
    inner_steps: int = setting(1, label="Inner steps", at_least=1, at_most=100,
                               help="Differentiable SGD steps per meta step (at the training learning rate).",
                               reason="unrolled, as local_search.inner_steps; the reference: 1")
    meta_lr: float = setting(1e-3, label="Meta learning rate", range=POSITIVE_META_RATE,
                             help="Adam's learning rate on the loss network (the reference: 1e-3).")
    hidden_units: int = setting(50, label="Hidden units", at_least=1, at_most=4_096,
                                help="Width of each hidden layer of the loss network.",
                                reason="it sees two numbers per class; the reference uses 50")
    hidden_layers: int = setting(2, label="Hidden layers", at_least=1, at_most=32,
                                 reason="the reference uses 2; deeper only slows the unrolled meta-gradient")
    batch_size: int = setting(128, label="Meta batch size", at_least=1, at_most=MAX_BATCH,
                              help="Training and validation batch of each meta step.")
    report_every: int = setting(25, label="Report every", at_least=1, at_most=100_000,
                                help="Meta steps between two scored snapshots of the network (one point of the "
                                "dashboard's curve each).", reason="the reference scores every 10% of its meta steps")


@dataclass(frozen=True)
class TaylorGLOSettings:
    """TaylorGLO (Gonzalez & Miikkulainen, GECCO 2021): CMA-ES over a 3rd-order Taylor polynomial's
    8 parameters (centres for f and y, six coefficients); fitness = validation error after training.

    The defaults are those of the EvoMAL paper's reference TaylorGLO runner (Raymond et al., TPAMI
    2023), which follows TaylorGLO: CMA-ES started at the origin with step size 1.2, run with the
    population and generations its experiments give every evolutionary method (25 x 50).
    """

    population_size: int = setting(25, label="Population size", at_least=TAYLORGLO_MIN_POPULATION,
                                   at_least_why="CMA-ES needs two parents", at_most=MAX_POPULATION,
                                   help="CMA-ES candidate polynomials per generation (at least 4).",
                                   reason="the reference gives every evolutionary method 25")
    generations: int = setting(50, label="Generations", at_least=1, at_most=10_000, help="CMA-ES generations.")
    sigma: float = setting(1.2, label="Initial step size σ", range=FloatRange(0.0, TAYLORGLO_MAX_START, low_open=True),
                           help="CMA-ES's starting spread of the 8 parameters (TaylorGLO: 1.2).",
                           reason="further out every sampled polynomial diverges in training")
    mean: float = setting(0.0, label="Initial mean", range=FloatRange(-TAYLORGLO_MAX_START, TAYLORGLO_MAX_START),
                          help="Where CMA-ES starts all 8 parameters (TaylorGLO: 0).")
    # hall_of_fame_size and training come from the shared sections (search, training)






def effective(config):
    """`config` as its method runs it: GP-LFL is the evolutionary search with local search off."""
    if config.method == "gplfl" and config.local_search.mode != "off":
        return dataclasses.replace(config, local_search=dataclasses.replace(config.local_search, mode="off"))
    return config
