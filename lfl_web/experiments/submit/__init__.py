"""Submitting an experiment: the new-experiment form and its layout, the work estimate, the
configuration's checks before it is stored, and the files users upload."""
