"""Giving a candidate loss its fitness, and meta-testing the learned losses.

    sequential     `SequentialEvaluator`: cache -> rejection -> local search -> fitness, one candidate at a time
    batched        `BatchedEvaluator`: the same order for chunks of candidates trained as one population
    plan           which evaluator and chunk size a configuration gets (`make_evaluator`)
    rejection      the screen that throws out losses before any training
    local_search   the weighted loss's weights tuned by unrolled meta-gradients (one candidate)
    metatest       training from scratch with a learned loss and the baseline on held-out data
    tuned_lr       each loss's own best learning rate, picked on validation data, for the meta-test
    verdict        a meta-test in plain words (better / no better / worse than the baseline at its best rate)
"""
