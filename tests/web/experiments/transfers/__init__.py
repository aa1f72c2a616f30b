"""Tests of lfl_web.experiments.transfers: transfers of a learned loss to another task."""
