"""Experiments: the stored record of every search, the Celery task that runs it, its live stream."""
