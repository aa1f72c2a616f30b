"""How many trainings the learning-rate tuning and the final choice run per loss, at most (torch-free:
`limits.work_estimate` counts them for pages and the form; `tuned_lr` and `final_choice` run them)."""

#: Learning rates meta_test.tune_lr tries per loss at most: scoring.tuned_lr's 5 grid rates and
#: up to 3 extensions past each edge (a test checks this against that module).
TUNING_RATES_AT_MOST = 11

#: Seeds each of those rates is trained on (scoring.tuned_lr.tuning_seeds): a rate at the edge of
#: stability trains well on one seed and badly on another, which one seed cannot see.
TUNING_SEEDS = 2

#: Trainings meta_test.tune_lr runs per loss at most to pick its rate: every rate on every tuning seed.
TUNING_RUNS_AT_MOST = TUNING_SEEDS * TUNING_RATES_AT_MOST

#: Losses the final choice compares at their own best rates before the meta-test (scoring.final_choice):
#: the hall of fame's best few, and the baseline beside them.
FINALISTS = 3

#: Rates the tuned protocol (training.lr_protocol) trains the baseline at, at most, to pick the
#: search's rate: training.lr, its two half-decade neighbours and up to 3 extensions past one edge.
SEARCH_RATES_AT_MOST = 3 + 2 * 3
