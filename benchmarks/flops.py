"""FLOPs of one CycleGAN training pair, counted two ways.

From the layer shapes (analytic): a conv's forward pass is 2 x output elements x kernel height x width x input
channels (a transposed conv: 2 x input elements x kernel x output channels). Its backward pass is twice that
(gradients of the input and of the weights). Per training pair, as the reference computes it:
  generator step      (4 + 2 with identity) generator passes, each forward + backward         3 F_G each
                      2 discriminator passes, forward + the gradient of their input            2 F_D each
  discriminator step  4 discriminator passes, forward + backward                               3 F_D each
which is 18 F_G + 16 F_D with the identity terms: about 1.885 TFLOP for the reference nets at 256 px.

From XLA's optimized HLO of the per-replica generator and discriminator functions (compiled): every convolution
counts 2 x its multiply-adds that touch a real input element, skipping padding and the holes of lhs dilation (how
XLA writes transposed convs and the input gradients of strided convs), as XLA's own cost analysis does. This
covers forward convs and both kinds of backward convs alike. Elementwise work (norms, activations, Adam)
is left out of both counts; it is well under 1% at these sizes.
"""
import re

INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\w+\[([\d,]*)\]")
CONVOLUTION = re.compile(r"convolution\(%?([\w.\-]+),\s*%?([\w.\-]+)\)")
WINDOW = re.compile(r"window=\{([^}]*)\}")
DIM_LABELS = re.compile(r"dim_labels=(\w+)_(\w+)->(\w+)")


def _window(text, key, rank, default):
    match = re.search(rf"\b{key}=([\dx_\-]+)", text)
    if not match:
        return [default] * rank
    return [tuple(int(v) for v in part.split("_")) if "_" in part else int(part)
            for part in match.group(1).split("x")]


def _valid_pairs(in_size, kernel, out_size, stride, pad_low, lhs_dilate, rhs_dilate):
    """(output position, kernel tap) pairs of one spatial dimension that land on a real input element: not on
    padding, and not on the holes that lhs dilation (transposed convs, input gradients of strided convs) adds."""
    last = (in_size - 1) * lhs_dilate
    count = 0
    for tap in range(kernel):
        offset = tap * rhs_dilate - pad_low
        count += sum(1 for o in range(out_size) if 0 <= o * stride + offset <= last
                     and (o * stride + offset) % lhs_dilate == 0)
    return count


def conv_flops_from_hlo(hlo_text):
    """Sum over the HLO module's convolutions of 2 x the multiply-adds that touch real input elements."""
    shapes = {}
    for line in hlo_text.splitlines():
        match = INSTRUCTION.match(line)
        if match:
            shapes[match.group(1)] = [int(d) for d in match.group(2).split(",") if d]
    total = 0
    for line in hlo_text.splitlines():
        if " convolution(" not in line:
            continue
        output = shapes[INSTRUCTION.match(line).group(1)]
        lhs_name, rhs_name = CONVOLUTION.search(line).groups()
        lhs, rhs = shapes[lhs_name], shapes[rhs_name]
        lhs_labels, rhs_labels, out_labels = DIM_LABELS.search(line).groups()
        window = WINDOW.search(line).group(1)
        spatial = sorted(label for label in out_labels if label.isdigit())
        rank = len(spatial)
        strides, pads = _window(window, "stride", rank, 1), _window(window, "pad", rank, (0, 0))
        lhs_dilates, rhs_dilates = _window(window, "lhs_dilate", rank, 1), _window(window, "rhs_dilate", rank, 1)
        taps = 1
        for d, label in enumerate(spatial):
            taps *= _valid_pairs(lhs[lhs_labels.index(label)], rhs[rhs_labels.index(label)],
                                 output[out_labels.index(label)], strides[d], pads[d][0], lhs_dilates[d],
                                 rhs_dilates[d])
        channels = output[out_labels.index("b")] * output[out_labels.index("f")] * rhs[rhs_labels.index("i")]
        total += 2 * channels * taps
    return total


def _product(dims):
    out = 1
    for d in dims:
        out *= d
    return out


def forward_flops(model, size, channels=3):
    """Forward FLOPs of a Keras model's convs on one size x size image, from the shapes its layers produce."""
    import keras
    import numpy as np

    convs = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    probe = keras.Model(model.inputs, [layer.output for layer in convs] + [layer.input for layer in convs])
    shapes = probe([np.zeros((1, size, size, channels), np.float32)])
    outputs, inputs = shapes[:len(convs)], shapes[len(convs):]
    total = 0
    for layer, out, inp in zip(convs, outputs, inputs):
        kh, kw = layer.kernel_size
        if isinstance(layer, keras.layers.Conv2DTranspose):  # every input position meets the whole kernel
            total += 2 * _product(inp.shape[1:]) * kh * kw * layer.filters
        else:
            total += 2 * _product(out.shape[1:]) * kh * kw * inp.shape[-1]
    return total


def analytic_pair_flops(nets, config):
    """18 F_G + 16 F_D (with identity terms), from the built networks' layer shapes at config.crop_size."""
    f_g = forward_flops(nets["G_AB"], config.crop_size, config.input_nc)
    f_d = forward_flops(nets["D_A"], config.crop_size, config.input_nc)
    generator_passes = 6 if config.lambda_identity > 0 else 4
    return {"F_G": f_g, "F_D": f_d, "per_pair": generator_passes * 3 * f_g + 2 * 2 * f_d + 4 * 3 * f_d}


def compiled_pair_flops(trainer, batch):
    """Conv FLOPs per pair in XLA's optimized HLO of the trainer's per-replica generator and discriminator
    functions, for a per-replica batch of `batch` (the trainer must have been built with xla=True)."""
    import tensorflow as tf

    size, channels = trainer.config.crop_size, trainer.config.input_nc
    images = tf.zeros([batch, size, size, channels])
    generator = trainer._generator_fn.experimental_get_compiler_ir(images, images)(stage="optimized_hlo")
    discriminator = trainer._discriminator_fn.experimental_get_compiler_ir(images, images, images, images)(
        stage="optimized_hlo")
    return {"generator": conv_flops_from_hlo(generator) / batch,
            "discriminator": conv_flops_from_hlo(discriminator) / batch,
            "per_pair": (conv_flops_from_hlo(generator) + conv_flops_from_hlo(discriminator)) / batch}
