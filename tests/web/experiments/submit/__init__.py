"""Tests of lfl_web.experiments.submit: the new-experiment form, its checks and uploads."""
