"""`python -m trainer`: the same job as `cyclegan train`."""
import sys

from cyclegan import run_job

sys.exit(run_job("train", sys.argv[1:], prog="python -m trainer"))
