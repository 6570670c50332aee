"""The CycleGAN trainer: networks, losses, input pipeline, distributed loop, checkpoints, export."""
