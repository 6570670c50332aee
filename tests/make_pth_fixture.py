"""Writes tests/fixtures/reference_G_ngf4_b2.pth and the outputs PyTorch computes from it, so that the mapping of
`cyclegan import` stays tested where PyTorch is not installed (tests/test_import.py). Run once, with PyTorch:

    python -m tests.make_pth_fixture

The file is in PyTorch's older pickle format, the one the reference's published models were saved in, with the
running-statistics keys its norms carried before PyTorch 0.4 (which `cyclegan import` drops, as the reference
does). Inputs are drawn from NumPy's PCG64 with a fixed seed, the same on every machine.
"""
import os

import numpy as np
import torch

from tests.torch_reference import random_generator, translate

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
NGF, N_BLOCKS, SEED = 4, 2, 7
WEIGHTS = os.path.join(FIXTURES, f"reference_G_ngf{NGF}_b{N_BLOCKS}.pth")
SIZES = ((64, 64), (68, 92))


def inputs(height, width):
    return np.random.default_rng(height * 1000 + width).uniform(-1, 1, (1, height, width, 3)).astype(np.float32)


def outputs_path(height, width):
    return os.path.join(FIXTURES, f"reference_G_ngf{NGF}_b{N_BLOCKS}_{height}x{width}.npy")


def stale_keys(generator):
    """The running statistics an InstanceNorm2d saved before PyTorch 0.4, on every norm of the generator."""
    stale = {}
    for name, module in generator.named_modules():
        if isinstance(module, torch.nn.InstanceNorm2d):
            stale[f"{name}.running_mean"] = torch.zeros(module.num_features)
            stale[f"{name}.running_var"] = torch.ones(module.num_features)
    return stale


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    generator = random_generator(NGF, N_BLOCKS, SEED)
    state = generator.state_dict()
    state.update(stale_keys(generator))
    torch.save(state, WEIGHTS, _use_new_zipfile_serialization=False)
    for height, width in SIZES:
        np.save(outputs_path(height, width), translate(generator, inputs(height, width)))
    print(f"wrote {WEIGHTS} ({len(state)} keys) and the outputs at {SIZES}")


if __name__ == "__main__":
    main()
