"""A training run: the loop, its strategy and input pipeline, checkpoints, preemption, restarts, the compile cache,
summaries, the model directory's layout, and a trained run read back (trained.py). Imports the model."""
