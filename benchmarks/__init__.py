"""Speed benchmarks: `python -m benchmarks.search_speed`."""
