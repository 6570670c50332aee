"""The reference learning-rate schedule over steps: constant for n_epochs, then linear decay.

The reference steps its LambdaLR once per epoch with
    lr(epoch) = lr0 * (1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)),   epoch = 0, 1, ...
so the last of the n_epochs_decay epochs trains at lr0 / (n_epochs_decay + 1) and the next would be at 0.
Here epoch = step // steps_per_epoch, so the schedule means the same whatever the global batch.
"""
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable("cyclegan")
class LinearDecayAfter(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, initial_lr, steps_per_epoch, n_epochs, n_epochs_decay):
        self.initial_lr, self.steps_per_epoch = initial_lr, steps_per_epoch
        self.n_epochs, self.n_epochs_decay = n_epochs, n_epochs_decay

    def __call__(self, step):
        epoch = tf.math.floordiv(tf.cast(step, tf.int64), self.steps_per_epoch)
        decayed = tf.maximum(tf.cast(epoch + 1 - self.n_epochs, tf.float32), 0.0)
        return self.initial_lr * tf.maximum(1.0 - decayed / float(self.n_epochs_decay + 1), 0.0)

    def get_config(self):
        return {"initial_lr": self.initial_lr, "steps_per_epoch": self.steps_per_epoch,
                "n_epochs": self.n_epochs, "n_epochs_decay": self.n_epochs_decay}
