"""Pixels and the networks' value range: uint8 0..255 in, [-1, 1] for the networks (the reference's
Normalize((0.5,) * 3, (0.5,) * 3) after ToTensor), and back."""
import tensorflow as tf


def to_model_range(pixels):
    """0..255 (uint8 or float) -> float32 in [-1, 1]."""
    return tf.cast(pixels, tf.float32) / 127.5 - 1.0


def to_uint8(values):
    """A network's output in [-1, 1] (clipped to it) -> uint8 pixels, rounded."""
    return tf.cast(tf.round((tf.clip_by_value(values, -1.0, 1.0) + 1.0) * 127.5), tf.uint8)
