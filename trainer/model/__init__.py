"""The CycleGAN itself: the reference's networks, losses, image pool, learning-rate schedule, the distributed
training step, and the networks' pixel range. Imports nothing else of trainer/ but its config."""
