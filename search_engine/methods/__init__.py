"""Loss-learning methods: strategies behind one interface (`registry.run_method`).

    settings    the methods' own configuration sections (torch-free; config.py reads them)
    registry    method name -> strategy object; `run_method(config, ...)` runs `config.method`
    evolutionary EvoMAL and GP-LFL: the genetic-programming search of `evolution.loop`
    taylorglo   TaylorGLO: CMA-ES over the coefficients of a third-order Taylor polynomial
    ml3         ML3: a small network as the loss, learned by unrolled meta-gradients

Every method returns an `evolution.loop.SearchResult` whose hall of fame holds learned losses
that the rest of lfl (exports, loss shape, meta-test, transfer, leaderboard) treats alike.
"""
