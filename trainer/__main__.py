"""`python -m trainer`: the same job as `cyclegan train`."""
import sys

from preprocessing.commands import run_job

sys.exit(run_job("train", sys.argv[1:], prog="python -m trainer"))
