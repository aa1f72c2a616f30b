"""Loss-learning methods: strategies of the one driver (`study.method.Method`, `study.driver.run_search`).

    settings     the methods' own configuration sections (torch-free; config.py reads them)
    evolutionary EvoMAL and GP-LFL: the genetic-programming search of `evolution.steps`
    taylorglo    TaylorGLO: CMA-ES over the coefficients of a third-order Taylor polynomial
    ml3          ML3: a small network as the loss, learned by unrolled meta-gradients

Every method's hall of fame holds learned losses that the rest of lfl (exports, loss shape,
meta-test, transfer, leaderboard) treats alike.
"""
