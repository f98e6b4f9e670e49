"""experiments.py's runner: runs, data, statistics and reports of the Section 4 experiments."""
