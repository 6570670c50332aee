"""The CycleGAN training step, distributed.

As the reference: generators first (the discriminators are not differentiated, so they stay frozen), then the
discriminators on fakes drawn from the image pools. Each replica computes its losses and gradients in a
function that XLA may compile; `apply_gradients`, which holds the cross-replica all-reduce, stays outside it
(XLA cannot compile across the devices of a MirroredStrategy). Per-example losses are averaged over the global
batch exactly once, so the all-reduced sum of gradients is the gradient of the global mean.
"""
import keras
import tensorflow as tf

from trainer import losses, networks
from trainer.pool import ImagePool
from trainer.schedule import LinearDecayAfter

class CycleGANTrainer:
    def __init__(self, config, strategy, steps_per_epoch, precision="float32", xla=False):
        self.config, self.strategy = config, strategy
        self.global_batch = config.batch_size * strategy.num_replicas_in_sync
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(precision)  # captured by each layer as it is built
        try:
            with strategy.scope():
                keras.utils.set_random_seed(config.seed)
                self.nets = networks.build(config)
                self.g_vars = self.nets["G_AB"].trainable_variables + self.nets["G_BA"].trainable_variables
                self.d_vars = self.nets["D_A"].trainable_variables + self.nets["D_B"].trainable_variables
                self.g_opt, self.d_opt = (self._optimizer(steps_per_epoch, precision) for _ in range(2))
                self.g_opt.build(self.g_vars)
                self.d_opt.build(self.d_vars)
                shape = [config.crop_size, config.crop_size, config.input_nc]
                self.pools = {d: ImagePool(config.pool_size, shape, seed=config.seed * 2 + i, name=f"pool_{d}")
                              for i, d in enumerate("AB")}
                self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        finally:
            keras.mixed_precision.set_global_policy(previous)
        self._generator_fn = tf.function(self._generator_grads, jit_compile=xla)
        self._discriminator_fn = tf.function(self._discriminator_grads, jit_compile=xla)
        self.train_step = tf.function(self._train_step)

    def _optimizer(self, steps_per_epoch, precision):
        c = self.config
        schedule = LinearDecayAfter(c.lr, steps_per_epoch, c.n_epochs, c.n_epochs_decay)
        optimizer = keras.optimizers.Adam(schedule, beta_1=c.beta1, beta_2=c.beta2, epsilon=c.adam_epsilon)
        return keras.optimizers.LossScaleOptimizer(optimizer) if precision == "mixed_float16" else optimizer

    def _mean(self, per_example):
        return {name: tf.nn.compute_average_loss(value, global_batch_size=self.global_batch)
                for name, value in per_example.items()}

    def _generator_grads(self, real_a, real_b):
        with tf.GradientTape() as tape:
            per_example, fakes = losses.generator_losses(self.nets, real_a, real_b, self.config)
            terms = self._mean(per_example)
            scaled = self.g_opt.scale_loss(tf.add_n(list(terms.values())))
        return tape.gradient(scaled, self.g_vars), terms, fakes["fake_a"], fakes["fake_b"]

    def _discriminator_grads(self, real_a, real_b, pooled_a, pooled_b):
        with tf.GradientTape() as tape:
            terms = self._mean(losses.discriminator_losses(self.nets, real_a, real_b, pooled_a, pooled_b,
                                                           self.config))
            scaled = self.d_opt.scale_loss(tf.add_n(list(terms.values())))
        return tape.gradient(scaled, self.d_vars), terms

    def _agree_on_overflow(self, optimizer, grads):
        """Keras's LossScaleOptimizer skips a step when the *first* replica's gradients overflow, assuming they were
        all-reduced already; here they are per replica, so when any replica overflowed, all of them must see it."""
        if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return grads
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        overflows = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                                   1.0 - tf.cast(finite, tf.float32))
        all_finite = overflows == 0
        return [tf.where(all_finite, g, g * float("nan")) for g in grads]

    def _replica_step(self, real_a, real_b):
        g_grads, g_terms, fake_a, fake_b = self._generator_fn(real_a, real_b)
        self.g_opt.apply_gradients(zip(self._agree_on_overflow(self.g_opt, g_grads), self.g_vars))
        pooled_a, pooled_b = self.pools["A"].query(fake_a), self.pools["B"].query(fake_b)
        d_grads, d_terms = self._discriminator_fn(real_a, real_b, pooled_a, pooled_b)
        self.d_opt.apply_gradients(zip(self._agree_on_overflow(self.d_opt, d_grads), self.d_vars))
        return {**g_terms, **d_terms}

    def _train_step(self, real_a, real_b, stop):
        """One step on a global batch (per-replica values) -> the global mean losses, and "stop": how many replicas
        were asked to stop (any worker's SIGTERM reaches every worker this way, so all of them save together)."""
        per_replica = self.strategy.run(self._replica_step, args=(real_a, real_b))
        results = {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                   for name, value in per_replica.items()}
        results["stop"] = self.strategy.reduce(tf.distribute.ReduceOp.SUM, self.strategy.run(tf.identity, (stop,)),
                                               axis=None)
        self.step.assign_add(1)
        return results

    def checkpointables(self):
        """Everything that makes the next step what it would have been: nets, optimizers (with their iterations
        and loss scale), pools (with their draw counters) and the step."""
        return {**self.nets, "g_opt": self.g_opt, "d_opt": self.d_opt, "pool_A": self.pools["A"],
                "pool_B": self.pools["B"], "step": self.step}
