"""How an image is scaled and cropped before it meets the networks: the reference's `--preprocess` modes, with its
names and meaning (data/base_dataset.py: get_transform, __scale_width, __make_power_2), in TensorFlow ops.

    resize_and_crop        resize to load_size x load_size, then a random crop_size square (the default)
    crop                   a random crop_size square of the image as stored
    scale_width_and_crop   width to load_size, height in proportion (at least crop_size), then a random square
    scale_width            width to load_size, height in proportion (at least crop_size)
    none                   the image as stored

The scale-only modes and `none` keep the aspect ratio, and each side is rounded to a multiple of the generator's
factor (4: two stride-2 downsamplings), as the reference's __make_power_2 does. Training flips each image
left-right at random after the crop; test time neither crops nor flips.

At test time a model meets images as its training mode scaled them, before the crop (the reference's rule):
resize_and_crop -> a crop_size square (its test options set load_size to crop_size), scale_width_and_crop and
scale_width -> scale_width with the same load_size, crop and none -> none. TensorFlow is imported where it is
used: the commands read the mode names before they load it.
"""
MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
CROPPED = ("resize_and_crop", "crop", "scale_width_and_crop")  # training gives crop_size squares: batches form
TEST_MODE = {"resize_and_crop": "resize_and_crop", "crop": "none", "scale_width_and_crop": "scale_width",
             "scale_width": "scale_width", "none": "none"}
FACTOR = 4  # the generator's two stride-2 downsamplings (networks.ImageSizeCheck takes it from here)


def to_multiple(side, factor=FACTOR):
    """`side` rounded to the nearest multiple of `factor`, at least `factor` (__make_power_2 per side)."""
    import tensorflow as tf

    return tf.maximum(tf.cast(tf.round(tf.cast(side, tf.float32) / factor), tf.int32) * factor, factor)


def scaled_shape(height, width, mode, load_size, crop_size):
    """(height, width) after the mode's resize, before any crop. int32 tensors."""
    import tensorflow as tf

    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    if mode == "resize_and_crop":
        return tf.constant(load_size), tf.constant(load_size)
    if mode in ("scale_width", "scale_width_and_crop"):
        # __scale_width: w = load_size, h = max(load_size * h / w, crop_size), truncated
        scaled = tf.cast(tf.cast(load_size * height, tf.float64) / tf.cast(width, tf.float64), tf.int32)
        height, width = tf.maximum(scaled, crop_size), tf.constant(load_size)
    if mode in ("scale_width", "none"):
        return to_multiple(height), to_multiple(width)
    if mode == "crop":  # a source smaller than the crop is scaled up to hold it (the reference would fail on it)
        short = tf.minimum(height, width)
        grow = tf.maximum(tf.cast(crop_size, tf.float64) / tf.cast(short, tf.float64), 1.0)
        return (tf.cast(tf.math.ceil(tf.cast(height, tf.float64) * grow), tf.int32),
                tf.cast(tf.math.ceil(tf.cast(width, tf.float64) * grow), tf.int32))
    return height, width


def resize(image, height, width):
    """Bicubic to height x width, antialiased as PIL's bicubic (the reference's) is when it shrinks; float32. An
    image already at that size is returned as it is (the resize would compute the same, at its cost)."""
    import tensorflow as tf

    shape = tf.shape(image)
    at_size = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
    return tf.cond(at_size, lambda: tf.cast(image, tf.float32),
                   lambda: tf.image.resize(image, tf.stack([height, width]), method="bicubic", antialias=True))


def scale(image, mode, load_size, crop_size):
    """uint8 or float HxWx3 -> float32, scaled as `mode` scales before its crop."""
    import tensorflow as tf

    shape = tf.shape(image)
    height, width = scaled_shape(shape[0], shape[1], mode, load_size, crop_size)
    return resize(image, height, width)


def for_training(image, seed, mode, load_size, crop_size):
    """One training image: scaled, a random crop_size square (the crop modes), a random left-right flip. `seed` is
    a stateless seed pair, so the crop and flip depend on it alone."""
    import tensorflow as tf

    image = scale(image, mode, load_size, crop_size)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if mode in CROPPED:
        image = tf.image.stateless_random_crop(image, [crop_size, crop_size, 3], crop_seed)
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def for_testing(image, mode, load_size, crop_size):
    """One test image, as a model trained with `mode` meets it: its test mode's scale, no crop, no flip."""
    test_mode = TEST_MODE[mode]
    if test_mode == "resize_and_crop":  # the reference's test options: load_size = crop_size, so the crop is moot
        return scale(image, test_mode, crop_size, crop_size)
    return scale(image, test_mode, load_size, crop_size)
