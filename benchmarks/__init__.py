"""Speed measured side by side, not tests: each module runs as `python -m benchmarks.NAME` from the repository's
root, and RESULTS.md holds the figures with the commands that measured them."""
