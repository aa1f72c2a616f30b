"""Configuration sections of the methods other than EvoMAL's (torch-free; read by `config`).

EvoMAL and GP-LFL are configured by the shared sections (`search`, `local_search`, ...); GP-LFL
is EvoMAL with local search off. Each dataclass states its paper's / the reference's defaults.
`check_ranges(config, need)` adds the range errors of the selected method's section (the bounds
every section has whichever method runs, sizes and real values, are in `limits`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ML3Settings:
    """ML3 (Bechtle et al., ICPR 2020), offline variant: a network loss learned by meta-gradients.

    The defaults are those of the EvoMAL paper's reference ML3 runner (Raymond et al., TPAMI 2023),
    which uses the settings of EvoMAL's local search: 250 meta steps, Adam with learning rate 1e-3
    on the loss network, one differentiable inner SGD step per meta step on batches of 128, and the
    network 2 -> 50 -> 50 -> 1 of Bechtle et al. The reference scores the network on validation
    data every 10% of the meta steps and keeps the best: report_every 25.
    """

    meta_steps: int = 250  # reference: 250 meta-gradient steps
    inner_steps: int = 1  # K differentiable SGD steps per meta step (inner lr = training.lr); reference: 1
    meta_lr: float = 1e-3  # Adam on the loss network's weights; reference: 1e-3
    hidden_units: int = 50  # reference: 2 -> 50 -> 50 -> 1, no bias, ReLU, softplus output
    hidden_layers: int = 2  # reference: 2 hidden layers
    batch_size: int = 128  # inner training and validation batch of a meta step; reference: 128
    report_every: int = 25  # meta steps per report (a "generation": the network's fitness); reference: 10%


@dataclass(frozen=True)
class TaylorGLOSettings:
    """TaylorGLO (Gonzalez & Miikkulainen, GECCO 2021): CMA-ES over a 3rd-order Taylor polynomial's
    8 parameters (centres for f and y, six coefficients); fitness = validation error after training.

    The defaults are those of the EvoMAL paper's reference TaylorGLO runner (Raymond et al., TPAMI
    2023), which follows TaylorGLO: CMA-ES started at the origin with step size 1.2, run with the
    population and generations its experiments give every evolutionary method (25 x 50).
    """

    population_size: int = 25  # lambda, candidates per generation (reference: EvoMAL's population 25)
    generations: int = 50  # reference: EvoMAL's 50 generations
    sigma: float = 1.2  # CMA-ES initial step size (TaylorGLO and the reference: 1.2)
    mean: float = 0.0  # CMA-ES initial mean of all eight parameters (TaylorGLO and the reference: the origin)
    # hall_of_fame_size and training come from the shared sections (search, training)


#: CMA-ES (cmaes) with fewer than 4 candidates has a single parent and divides by zero in its
#: covariance learning rates.
TAYLORGLO_MIN_POPULATION = 4
#: |mean| and sigma at most this (limits.FLOAT_RANGES): further out every sampled polynomial
#: diverges in training, and cmaes refuses parameters beyond 1e32.
TAYLORGLO_MAX_START = 1_000.0


METHOD_SECTIONS = {"ml3": "ml3", "taylorglo": "taylorglo"}  # method -> its own configuration section


def check_ranges(config, need) -> None:
    """Record (through `need(ok, field, message)`) the range errors of the selected method's section."""
    if config.method == "ml3":
        _check_ml3(config.ml3, need)
    if config.method == "taylorglo":
        _check_taylorglo(config.taylorglo, need)


def _check_ml3(m: ML3Settings, need) -> None:
    """Range errors of the ml3 section (its upper bounds and meta_lr's range are in `limits`)."""
    for name in ("meta_steps", "inner_steps", "hidden_units", "hidden_layers", "batch_size", "report_every"):
        value = getattr(m, name)
        need(value >= 1, f"ml3.{name}", f"must be at least 1, got {value}")


def _check_taylorglo(t: TaylorGLOSettings, need) -> None:
    """Range errors of the taylorglo section (its upper bounds, sigma's and mean's ranges are in `limits`)."""
    need(t.population_size >= TAYLORGLO_MIN_POPULATION, "taylorglo.population_size",
         f"must be at least {TAYLORGLO_MIN_POPULATION} (CMA-ES needs two parents), got {t.population_size}")
    need(t.generations >= 1, "taylorglo.generations", f"must be at least 1, got {t.generations}")


def effective(config):
    """`config` as its method runs it: GP-LFL is the evolutionary search with local search off."""
    if config.method == "gplfl" and config.local_search.mode != "off":
        return dataclasses.replace(config, local_search=dataclasses.replace(config.local_search, mode="off"))
    return config


def generation_count(config: dict) -> int:
    """How many "generations" (GenerationFinished events) a run of a stored configuration makes: CMA-ES
    generations for TaylorGLO, reports for ML3 (one per report_every meta steps, the last maybe
    shorter), GP generations otherwise. Reads the JSON form, so a page needs neither torch nor a
    validated configuration object."""
    method = config.get("method", "evomal")
    if method == "taylorglo":
        return int(config.get("taylorglo", {}).get("generations", TaylorGLOSettings.generations))
    if method == "ml3":
        ml3 = {**dataclasses.asdict(ML3Settings()), **config.get("ml3", {})}
        return -(-int(ml3["meta_steps"]) // int(ml3["report_every"]))
    return int(config.get("search", {}).get("generations", 50))


def network_weight_count(config: dict) -> int | None:
    """How many weights the loss network of a stored configuration has (ML3: every scored snapshot
    has them all), None for a method whose losses are expressions. Reads the JSON form, as
    `generation_count` does."""
    if config.get("method", "evomal") != "ml3":
        return None
    from search_engine.expr.network import flat_size, network_widths  # torch-free

    ml3 = {**dataclasses.asdict(ML3Settings()), **config.get("ml3", {})}
    return flat_size(network_widths(int(ml3["hidden_units"]), int(ml3["hidden_layers"])))
