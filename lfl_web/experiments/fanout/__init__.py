"""A search fanned out over any number of workers: the web driver of the engine's method steps, a
worker's side of a chunk, what is sent out (chunks, the meta-test), the coordinator's sweep, the
cancel poll, and the meta-test a worker runs after a search."""
