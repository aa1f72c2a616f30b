"""EvoMAL and GP-LFL: the genetic-programming loss search of `evolution.loop`.

GP-LFL is the same search with every candidate scored as its symbolic expression (local search
off), the baseline of the EvoMAL paper; EvoMAL refines each accepted candidate's edge weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_engine.methods.settings import effective


@dataclass(frozen=True)
class Evolutionary:
    """Strategy object: runs `run_search` on the configuration as the method reads it."""

    name: str

    def run(self, config, on_event=None, should_stop=None, *, checkpoint_path=None, resume=False):
        from search_engine.evolution.loop import run_search

        return run_search(effective(config), on_event, should_stop, checkpoint_path=checkpoint_path, resume=resume)


EVOMAL = Evolutionary("evomal")
GPLFL = Evolutionary("gplfl")
