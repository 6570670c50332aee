"""`python -m pipeline`: the same job as `cyclegan preprocess`."""
import sys

from preprocessing.commands import run_job

sys.exit(run_job("preprocess", sys.argv[1:], prog="python -m pipeline"))
