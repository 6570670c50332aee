"""The reference's image pool (Shrivastava et al.), as TensorFlow state.

Until the pool holds `size` images, each new image is stored and returned. After that, with probability 0.5 a
random stored image is returned and the new one takes its place; otherwise the new image is returned.

Its variables are on-read synchronised, so each replica of a distribution strategy keeps a pool of its own
without any communication. A checkpoint saves every local replica's pool, stacked (a tf.Variable would save only
one of them), and a restore gives each replica its own back; with another replica count they are reused in turn.
Random draws are stateless, seeded by (seed, draws so far, replica), so a restored pool draws as it would have.
"""
import tensorflow as tf


class _Untracked:
    """Holds the variables out of the checkpoint's automatic tracking: the pool serialises them itself."""


class ImagePool(tf.Module):
    def __init__(self, size, image_shape, seed=0, name=None):
        super().__init__(name=name)
        self.size, self.seed = size, seed
        local = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._state = _Untracked()
        self._state.variables = {
            "images": tf.Variable(tf.zeros([max(size, 1), *image_shape]), name="images", **local),
            "filled": tf.Variable(0, dtype=tf.int64, name="filled", **local),
            "draws": tf.Variable(0, dtype=tf.int64, name="draws", **local)}

    images = property(lambda self: self._state.variables["images"])
    filled = property(lambda self: self._state.variables["filled"])
    draws = property(lambda self: self._state.variables["draws"])

    def _serialize_to_tensors(self):
        return {name: tf.stack([v.read_value() for v in getattr(var, "values", (var,))])
                for name, var in self._state.variables.items()}

    def _restore_from_tensors(self, restored_tensors):
        assigns = []
        for name, var in self._state.variables.items():
            saved = restored_tensors[name]
            for i, replica in enumerate(getattr(var, "values", (var,))):
                assigns.append(replica.assign(saved[i % tf.shape(saved)[0]]))
        return tf.group(assigns)

    def _replica(self):
        context = tf.distribute.get_replica_context()
        return tf.cast(context.replica_id_in_sync_group if context else 0, tf.int64)

    def query(self, images):
        """A batch of generated images -> a batch of the same size for the discriminator (statically batched)."""
        if self.size == 0:
            return images
        images = tf.cast(images, self.images.dtype)
        pool = self.images.handle  # this replica's own variable: one slot is read and written, not the whole pool
        out = []
        for i in range(images.shape[0]):
            seed = tf.stack([tf.cast(self.seed, tf.int64) * 1_000_003 + self._replica(), self.draws.read_value()])
            self.draws.assign_add(1)
            coin = tf.random.stateless_uniform([], seed)
            slot_if_full = tf.random.stateless_uniform([], seed + 1, maxval=self.size, dtype=tf.int64)
            filled = self.filled.read_value()
            full = filled >= self.size
            swap = tf.logical_and(full, coin > 0.5)
            slot = tf.where(full, slot_if_full, filled)
            stored = tf.raw_ops.ResourceGather(resource=pool, indices=slot, dtype=self.images.dtype)
            out.append(tf.where(swap, stored, images[i]))
            kept = tf.where(tf.logical_or(tf.logical_not(full), swap), images[i], stored)
            tf.raw_ops.ResourceScatterUpdate(resource=pool, indices=slot[None], updates=kept[None])
            self.filled.assign(tf.minimum(filled + 1, self.size))
        return tf.stack(out)
