"""The evolutionary search over loss expressions (EvoMAL's outer loop).

    operators   initialisation, tournament selection, crossover, mutation (genetic programming)
    loop        `run_search`: generations of breed -> evaluate -> keep, with events and checkpoints
    checkpoint  the search state written after every generation, and resuming from it
    events      the immutable events a search reports to observers (CLI, web)
"""
