"""Many candidate losses trained as one program (the fast paths behind `scoring.batched`).

    networks      a model's parameters stacked over P members, with batched forward passes
    training      population training, fitness and the rejection screen for P losses at once
    local_search  the population's local search (unrolled, or from a shared starting point)
    linearize     a network's VJP and JVP at one point for P cotangents / tangents at once
"""
