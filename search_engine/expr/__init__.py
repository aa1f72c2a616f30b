"""Loss expressions: the primitive set, trees and their text form, SymPy canonical forms and LaTeX,
trees with a learnable weight on every edge, and compiling trees into torch losses.

    primitives  the operations and terminals a loss is built from (one table, one row per operation:
                torch text, SymPy, LaTeX, derivative rule; torch-free)
    tree        `Node`, prefix text <-> tree, JSON form, the known losses
    formula     a tree as LaTeX, with or without its edge weights (torch-free, SymPy-free)
    compile     a tree as an elementwise torch function of (y, f)
    symbolic    canonical forms (the equivalence cache's key), simplified LaTeX and text
    weighted    a tree with one weight per edge (local search's parameterized loss)
    program     a population's trees as one generated value-and-derivative program
    dual        the value and derivative rule each primitive emits into that program
    losses      trees applied to model outputs and targets (classification / regression, reductions)
    network     a network loss (ML3): its JSON form, validation and torch forward
"""
