"""The reference CycleGAN networks in Keras 3, built from a few small functions.

Faithful to the authors' code: reflection padding, instance norm without scale and offset (so convs keep their
bias), PyTorch's padding arithmetic (explicit zero padding + 'valid' convs, and transposed convs cropped exactly
as `padding=1, output_padding=1` does), N(0, 0.02) weights and zero biases.

Under a mixed precision policy the convs compute in half precision while normalisation statistics and the network
outputs stay float32. Only Keras's own layers and ops are used, so the same nets build under the JAX backend
(benchmarks/xla_step_jax.py) as under TensorFlow.
"""
import dataclasses

import keras
from keras import layers

from trainer.model import scale_modes


@dataclasses.dataclass(frozen=True)
class Shape:
    """What the four networks are built from (the TrainConfig fields of the same names)."""
    input_nc: int
    ngf: int
    ndf: int
    n_blocks: int
    n_layers_d: int
    norm: str
    upsample: str


def init():
    return {"kernel_initializer": keras.initializers.RandomNormal(0.0, 0.02), "bias_initializer": "zeros"}


class ReflectionPad(layers.Layer):
    def __init__(self, pad, **kwargs):
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x):
        p = self.pad
        return keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, shape):
        grow = lambda d: None if d is None else d + 2 * self.pad  # noqa: E731
        return shape[0], grow(shape[1]), grow(shape[2]), shape[3]

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


class DropFirstRowAndColumn(layers.Layer):
    """Cropping2D(((1, 0), (1, 0))) as one slice, whose gradient is a pad: Cropping2D's strided slice has a
    gradient kernel far slower on CPUs (benchmarks/RESULTS.md, "Per-op profile")."""

    def call(self, x):
        batch, height, width, channels = keras.ops.shape(x)
        return keras.ops.slice(x, [0, 1, 1, 0], [batch, height - 1, width - 1, channels])

    def compute_output_shape(self, shape):
        shrink = lambda d: None if d is None else d - 1  # noqa: E731
        return shape[0], shrink(shape[1]), shrink(shape[2]), shape[3]


class ImageSizeCheck(layers.Layer):
    """Fails clearly unless height and width are multiples of 4 and at least 8.

    Two stride-2 downsamplings need multiples of 4, and the residual blocks' reflection padding needs at least
    2 pixels at a quarter of the size.
    """

    FACTOR, MINIMUM = scale_modes.FACTOR, 8

    def call(self, x):
        message = (f"the generator needs height and width that are multiples of {self.FACTOR} and at least "
                   f"{self.MINIMUM}; pad or crop the image (the exported model's serving signature pads for you)")
        height, width = x.shape[1], x.shape[2]
        if isinstance(height, int) and isinstance(width, int):  # always under JAX, whose shapes are static
            if height % self.FACTOR or width % self.FACTOR or min(height, width) < self.MINIMUM:
                raise ValueError(f"{message}; got {height}x{width}")
            return x
        # Sizes known only when the graph runs: only TensorFlow has those, and a run-time assertion to go with them.
        import tensorflow as tf

        size = tf.shape(x)[1:3]
        checks = [tf.debugging.assert_equal(size % self.FACTOR, 0, message=message),
                  tf.debugging.assert_greater_equal(size, self.MINIMUM, message=message)]
        with tf.control_dependencies(checks):
            return tf.identity(x)

    def compute_output_shape(self, shape):
        return shape


def discriminator_output_size(size, n_layers):
    """The PatchGAN's output side for an input side: PyTorch's conv arithmetic, (s + 2 * pad - kernel) // stride + 1,
    for its stride-2 layers, its stride-1 layer and the final conv (kernel 4, pad 1 each)."""
    for stride in [2] * n_layers + [1, 1]:
        size = (size + 2 - 4) // stride + 1
    return size


def input_size_problem(size, n_layers_d):
    """None, or why square images of `size` px cannot go through a generator and a discriminator of `n_layers_d`
    stride-2 layers."""
    if size % ImageSizeCheck.FACTOR or size < ImageSizeCheck.MINIMUM:
        return (f"the generator needs a multiple of {ImageSizeCheck.FACTOR} of at least {ImageSizeCheck.MINIMUM}: "
                "two stride-2 downsamplings, then reflection padding at a quarter of the size")
    if discriminator_output_size(size, n_layers_d) < 1:
        smallest = next(s for s in range(size, 1 << 16, ImageSizeCheck.FACTOR)
                        if discriminator_output_size(s, n_layers_d) >= 1)
        return (f"the discriminator's {n_layers_d + 1} stride-2 and 2 stride-1 convolutions (--n_layers_d "
                f"{n_layers_d}) leave no output pixel below {smallest} px")
    return None


class InstanceNorm(layers.Layer):
    """Each image's channels to zero mean and unit variance over height and width (PyTorch's InstanceNorm2d
    without affine), in float32, with its gradient written out: dx = (dy - mean(dy) - x̂ mean(dy x̂)) / σ.

    The same arithmetic as Keras's GroupNormalization with one group per channel, in fewer ops over the
    activations: no reshape into groups, and no broadcasting ops (Tile, Sum, AddN) from autodiff in the backward
    pass: well under half the Mul ops of autodiff's (benchmarks/RESULTS.md, "Per-op profile")."""

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        @keras.ops.custom_gradient
        def normalize(x):
            mean, variance = keras.ops.moments(x, axes=[1, 2], keepdims=True)
            inverse = keras.ops.rsqrt(variance + self.epsilon)
            normalized = (x - mean) * inverse

            def gradient(*upstream, **_):  # TensorFlow passes `variables`, JAX only the upstream gradient
                dy = upstream[0]
                mean_dy = keras.ops.mean(dy, axis=[1, 2], keepdims=True)
                mean_dy_x = keras.ops.mean(dy * normalized, axis=[1, 2], keepdims=True)
                return inverse * (dy - mean_dy - normalized * mean_dy_x)

            return normalized, gradient

        return normalize(x)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def norm(kind):
    if kind == "instance":
        return InstanceNorm(epsilon=1e-5, dtype="float32")
    return layers.Identity()


def conv_norm_act(x, filters, kernel, stride, norm_kind, act, pad=0, reflect=False):
    if pad:
        x = ReflectionPad(pad)(x) if reflect else layers.ZeroPadding2D(pad)(x)
    x = layers.Conv2D(filters, kernel, stride, padding="valid", **init())(x)
    x = norm(norm_kind)(x)
    return act(x) if act else x


def resnet_block(x, filters, norm_kind):
    y = conv_norm_act(x, filters, 3, 1, norm_kind, layers.ReLU(), pad=1, reflect=True)
    y = conv_norm_act(y, filters, 3, 1, norm_kind, None, pad=1, reflect=True)
    return layers.Add()([x, y])


def upsample(x, filters, mode):
    if mode == "transpose":
        # PyTorch's ConvTranspose2d(3, stride 2, padding 1, output_padding 1) is the full 2H+1 output less its
        # first row and column; Keras's padding="same" would drop the last ones instead.
        x = layers.Conv2DTranspose(filters, 3, 2, padding="valid", **init())(x)
        return DropFirstRowAndColumn()(x)
    # resize-convolution: no checkerboard artifacts
    x = layers.UpSampling2D(2, interpolation="nearest")(x)
    x = ReflectionPad(1)(x)
    return layers.Conv2D(filters, 3, padding="valid", **init())(x)


def resnet_generator(input_nc=3, output_nc=3, ngf=64, n_blocks=9, norm_kind="instance", upsample_mode="transpose",
                     name="generator"):
    """The reference ResNet generator: c7s1-ngf, d2ngf, d4ngf, n_blocks x R4ngf, u2ngf, ungf, c7s1-output_nc, tanh."""
    inputs = keras.Input((None, None, input_nc))
    x = ImageSizeCheck()(inputs)
    x = conv_norm_act(x, ngf, 7, 1, norm_kind, layers.ReLU(), pad=3, reflect=True)
    for mult in (2, 4):
        x = conv_norm_act(x, ngf * mult, 3, 2, norm_kind, layers.ReLU(), pad=1)
    for _ in range(n_blocks):
        x = resnet_block(x, ngf * 4, norm_kind)
    for mult in (2, 1):
        x = upsample(x, ngf * mult, upsample_mode)
        x = layers.ReLU()(norm(norm_kind)(x))
    x = ReflectionPad(3)(x)
    x = layers.Conv2D(output_nc, 7, padding="valid", **init())(x)
    outputs = layers.Activation("tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def patch_discriminator(input_nc=3, ndf=64, n_layers=3, norm_kind="instance", name="discriminator"):
    """The reference PatchGAN: with n_layers=3 each output logit sees a 70x70 patch of the input."""
    leaky = lambda: layers.LeakyReLU(negative_slope=0.2)  # noqa: E731
    inputs = keras.Input((None, None, input_nc))
    x = conv_norm_act(inputs, ndf, 4, 2, "none", leaky(), pad=1)
    for n in range(1, n_layers + 1):
        stride = 2 if n < n_layers else 1
        x = conv_norm_act(x, ndf * min(2 ** n, 8), 4, stride, norm_kind, leaky(), pad=1)
    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(1, 4, padding="valid", **init())(x)
    outputs = layers.Activation("linear", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


NAMES = ("G_AB", "G_BA", "D_A", "D_B")


def build(shape: Shape):
    """The four networks of a CycleGAN: G_AB (A->B), G_BA (B->A), D_A (judges A), D_B (judges B)."""
    gen = dict(input_nc=shape.input_nc, output_nc=shape.input_nc, ngf=shape.ngf, n_blocks=shape.n_blocks,
               norm_kind=shape.norm, upsample_mode=shape.upsample)
    disc = dict(input_nc=shape.input_nc, ndf=shape.ndf, n_layers=shape.n_layers_d, norm_kind=shape.norm)
    nets = {name: resnet_generator(**gen, name=name) for name in NAMES[:2]}
    return {**nets, **{name: patch_discriminator(**disc, name=name) for name in NAMES[2:]}}


def parameter_report(nets):
    """One line per network, as the reference prints them when training starts."""
    return [f"[Network {name}] Total number of parameters : {net.count_params():,} ({net.count_params() / 1e6:.3f} M)"
            for name, net in nets.items()]
