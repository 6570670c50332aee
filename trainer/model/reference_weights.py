"""The reference's generator weights (a PyTorch state dict of its ResnetGenerator) in our Keras generator.

The reference builds its generator as one nn.Sequential, `model`, so a weight's key is its layer's index there:

    model.0 ReflectionPad2d(3)  model.1 Conv2d 7x7  model.2 InstanceNorm2d  model.3 ReLU
    model.4/.7 Conv2d 3x3 stride 2 (each with a norm and a ReLU after it)
    model.10 ... model.(9+n) ResnetBlock: conv_block.1 and conv_block.5 are its two 3x3 convs (2 and 6 their norms)
    model.(10+n)/.(13+n) ConvTranspose2d 3x3 stride 2 (each with a norm and a ReLU after it)
    model.(16+n) ReflectionPad2d(3)  model.(17+n) Conv2d 7x7  model.(18+n) Tanh

for n residual blocks, in the order our generator's convolutions are built (trainer/model/networks.py). Its
InstanceNorm2d has no affine parameters and no running statistics, so the norms have no weights; files saved by
PyTorch before 0.4 carry running_mean/running_var (and num_batches_tracked) keys on them, which the reference drops
when it loads (`__patch_instance_norm_state_dict`), as this module does. Layouts: Conv2d weights are
(out, in, kh, kw) and ConvTranspose2d weights (in, out, kh, kw); Keras's kernels are (kh, kw, in, out) and
(kh, kw, out, in): the same transpose, (2, 3, 1, 0), maps both.
"""
from keras import layers

STALE_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


class MappingError(ValueError):
    """The state dict does not fit the generator: each problem is a line naming the key."""


def conv_keys(n_blocks):
    """The reference's key prefix of each of the generator's convolutions, in build order."""
    blocks = [f"model.{10 + i}.conv_block.{j}" for i in range(n_blocks) for j in (1, 5)]
    return ["model.1", "model.4", "model.7", *blocks, f"model.{10 + n_blocks}", f"model.{13 + n_blocks}",
            f"model.{17 + n_blocks}"]


def norm_keys(n_blocks):
    """The key prefixes of the generator's norms (which hold weights only in files older than PyTorch 0.4)."""
    blocks = [f"model.{10 + i}.conv_block.{j}" for i in range(n_blocks) for j in (2, 6)]
    return {"model.2", "model.5", "model.8", *blocks, f"model.{11 + n_blocks}", f"model.{14 + n_blocks}"}


def architecture(state_dict):
    """(ngf, n_blocks) of the generator a reference state dict was saved from, or None if it is not one."""
    first, blocks = state_dict.get("model.1.weight"), {key.split(".")[1] for key in state_dict if ".conv_block." in key}
    return (int(first.shape[0]), len(blocks)) if first is not None and len(first.shape) == 4 else None


def convolutions(generator):
    return [layer for layer in generator.layers if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose))]


def load_generator(generator, state_dict, n_blocks):
    """Set `generator`'s weights from a reference state dict (names -> NumPy arrays); returns how many stale
    running-statistics keys were dropped. A MappingError lists every missing, unexpected or misshapen key."""
    state = {key.removeprefix("module."): value for key, value in state_dict.items()}  # saved from DataParallel
    norms = norm_keys(n_blocks)
    stale = [key for key in state if key.endswith(STALE_SUFFIXES) and key.rsplit(".", 1)[0] in norms]
    convs, prefixes = convolutions(generator), conv_keys(n_blocks)
    problems, weights = [], []
    for layer, prefix in zip(convs, prefixes):
        kernel, bias = layer.get_weights()
        torch_shape = tuple(kernel.shape[i] for i in (3, 2, 0, 1))  # Keras (kh, kw, a, b) -> PyTorch (b, a, kh, kw)
        for key, want in ((f"{prefix}.weight", torch_shape), (f"{prefix}.bias", bias.shape)):
            if key not in state:
                problems.append(f"missing key {key} (shape {want})")
            elif tuple(state[key].shape) != tuple(want):
                problems.append(f"{key}: shape {tuple(state[key].shape)}, this generator's is {tuple(want)}")
        if not problems:
            weights.append([state[f"{prefix}.weight"].transpose(2, 3, 1, 0), state[f"{prefix}.bias"]])
    expected = {f"{prefix}.{part}" for prefix in prefixes for part in ("weight", "bias")}
    problems += [f"unexpected key {key} (shape {tuple(state[key].shape)})"
                 for key in sorted(set(state) - expected - set(stale))]
    if problems:
        raise MappingError("\n".join(problems))
    for layer, (kernel, bias) in zip(convs, weights):
        layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
    return len(stale)
