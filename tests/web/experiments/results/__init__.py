"""Tests of lfl_web.experiments.results: the dashboard's panels, downloads, the leaderboard."""
