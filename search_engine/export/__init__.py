"""A learned loss outside the search: the spec, and the files users download.

    spec          `LearnedLossSpec`: a learned loss with its task, fitness and meta-test, checked
    formats       the four download formats (torch, torchscript, latex, json), reading result files
    torch_source  the standalone torch module and TorchScript
    network_source  the standalone torch module of a network loss (ML3), its weights embedded
    latex         the LaTeX document (its formulas: `expr.formula`)
    loss_shape    the loss sampled against the prediction, for plotting
"""
