"""Tests of lfl_web.experiments.fanout: a search over many workers: the driver, chunks, the coordinator, the meta-test."""
