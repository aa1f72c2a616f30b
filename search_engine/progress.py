"""Terminal progress for a search: one tqdm bar over all candidates, with the best fitness so far."""

from __future__ import annotations

from search_engine.config import ExperimentConfig
from search_engine.evolution.events import CandidateEvaluated, Event, GenerationFinished, SearchStarted


class ProgressPrinter:
    """An `on_event` observer that draws a progress bar and prints one line per generation."""

    def __init__(self, config: ExperimentConfig, enabled: bool = True):
        self.enabled = enabled
        self.total = config.search.generations * config.search.population_size
        self.bar = None

    def __call__(self, event: Event) -> None:
        if not self.enabled:
            return
        if isinstance(event, SearchStarted):
            from tqdm import tqdm

            # The method's own size (CMA-ES generations, ML3 report blocks), not the GP section's.
            self.total = event.generations * event.population_size
            done = event.start_generation * event.population_size
            self.bar = tqdm(total=self.total, initial=done, unit="cand", dynamic_ncols=True)
            if event.baseline_fitness is not None:
                self.bar.write(f"baseline {event.baseline_loss}: validation fitness {event.baseline_fitness:.4f}")
        elif isinstance(event, CandidateEvaluated) and self.bar is not None:
            self.bar.update(1)
        elif isinstance(event, GenerationFinished) and self.bar is not None:
            best = "n/a" if event.best_fitness is None else f"{event.best_fitness:.4f}"
            self.bar.set_postfix_str(f"gen {event.generation} best {best}")
            self.bar.write(
                f"gen {event.generation:3d}  best {best}  rejected {event.rejected:2d}  "
                f"cached {event.cache_hits:2d}  {event.seconds:5.1f}s  {_short(event.best_expression)}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _short(expression: str | None, most: int = 100) -> str | None:
    """An expression cut to `most` characters for a terminal line (TaylorGLO's polynomial is long)."""
    if expression is None or len(expression) <= most:
        return expression
    return expression[: most - 3] + "..."
