"""One search driver for every method (optuna's Study / Sampler / Storage is the model).

    method    `Method`: what a loss-learning method says (its settings, evaluator, state, and the
              propose / evaluate / tell steps of one generation); the driver does everything else
    driver    `run_search`: loading, stop, resume, the baseline, events, checkpoints, finishing,
              for whichever method `config.method` names; `advance` the same steps for a driver
              whose evaluations come back from other processes (the web's workers)
    storage   `FileStorage`: a method's state as a JSON checkpoint file, written atomically
    result    `SearchResult`, `check_same_experiment`
"""
