"""The CycleGAN training step, distributed.

As the reference: generators first (the discriminators are not differentiated, so they stay frozen), then the
discriminators on fakes drawn from the image pools. Each replica computes its losses and gradients in a
function that XLA may compile; the cross-replica all-reduce and the optimizers' updates stay outside it (XLA
cannot compile across the devices of a MirroredStrategy). With one replica there is nothing to all-reduce, so
XLA compiles the replica's whole step, pools and updates included: one program per step instead of two and the
hundreds of small update ops between them (benchmarks/RESULTS.md; a GPU's step is shorter, so those ops are a
larger share of it there). The discriminators' gradients do not depend on the
generators' update, so both sets are summed over the replicas in one all-reduce, not one each. That measured
no faster on the CPU benchmark, but it makes loss-scale skips agree across replicas without collectives of
their own. Per-example losses are averaged over the global batch exactly once, so the summed gradient is the
gradient of the global mean.
"""
import keras
import tensorflow as tf

from preprocessing.flags import view
from trainer.model import losses, networks
from trainer.model.pool import ImagePool
from trainer.model.schedule import LinearDecayAfter

# The step's health signals (trainer/run/health.py watches them), beside its losses: each discriminator's mean
# output on real and on pooled fake images, each network's gradient norm (of the summed gradient the optimizer
# applies, loss scale taken out), each pool's share of returned images that were swapped for stored ones, and the
# variance over the global batch of each generator's outputs and of the real images of the domain it imitates.
HEALTH = ("D_A_real", "D_A_fake", "D_B_real", "D_B_fake", "G_AB_grad_norm", "G_BA_grad_norm", "D_A_grad_norm",
          "D_B_grad_norm", "pool_A_swap_rate", "pool_B_swap_rate", "G_AB_output_variance", "B_variance",
          "G_BA_output_variance", "A_variance")
VARIANCE_BLOCK = 8  # the variance is of 8x8 block means: a collapse shows at that scale, and its sums stay small


def batch_sums(images):
    """(sum, sum of squares) over the batch of each 8x8 block's mean: added up over the replicas, the global
    batch's variance follows from them."""
    block = min(VARIANCE_BLOCK, *images.shape[1:3])
    blocks = tf.nn.avg_pool2d(tf.cast(images, tf.float32), block, block, "VALID")
    return tf.reduce_sum(blocks, 0), tf.reduce_sum(tf.square(blocks), 0)


def batch_variance(total, squares, count):
    return tf.reduce_mean(squares / count - tf.square(total / count))


def swap_rate(pooled, fakes):
    """The share of the pool's returned images that are stored ones, not this step's fakes."""
    swapped = tf.reduce_any(tf.not_equal(pooled, tf.cast(fakes, pooled.dtype)), axis=[1, 2, 3])
    return tf.reduce_mean(tf.cast(swapped, tf.float32))


class SummedAdam(keras.optimizers.Adam):
    """Adam given gradients already summed over the replicas (Keras's would all-reduce them again), updating each
    variable in one kernel. With summed gradients every replica also sees the same overflow, so a
    LossScaleOptimizer skips a step on all replicas or none."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """Keras's Adam update, each variable's in one kernel (TensorFlow's ResourceApplyAdam, which tf.keras's Adam
        ran) instead of a dozen small ops, with the step's scalars computed once per device, not per variable.
        Every device runs this for every variable at every step, so its op count is host time on every step
        (benchmarks/RESULTS.md, "Per-step host overhead"). Same formula and order, except that the kernel takes
        1 - beta_2 in float32 (1 - 0.999f) where Keras rounds 0.001: 1.3e-5 apart."""
        grads, variables = zip(*grads_and_vars)

        def on_device(_anchor_copy, learning_rate, *grads):  # once per device; the variables resolve to its copies here
            scalars = {}
            for grad, variable in zip(grads, variables):
                dtype = variable.dtype
                if dtype not in scalars:
                    step = tf.cast(self.iterations + 1, dtype)
                    beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
                    scalars[dtype] = dict(beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
                                          lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
                                          epsilon=tf.cast(self.epsilon, dtype))
                index = self._get_variable_index(variable)
                tf.raw_ops.ResourceApplyAdam(var=variable.handle, m=self._momentums[index].value.handle,
                                             v=self._velocities[index].value.handle, grad=tf.cast(grad, dtype),
                                             **scalars[dtype])

        distribution.extended.update(variables[0], on_device, args=(learning_rate, *grads), group=False)


class Rematerialized:
    """A network whose activations are recomputed in the backward pass rather than kept (`--remat`): the same
    values and gradients, less memory, more compute."""

    def __init__(self, net):
        self.net, self._calls = net, {}

    def __call__(self, images, training=False):
        if training not in self._calls:  # recompute_grad passes positional arguments only
            self._calls[training] = tf.recompute_grad(lambda x: self.net(x, training=training))
        return self._calls[training](images)


class CycleGANTrainer:
    def __init__(self, config, strategy, steps_per_epoch, precision="float32", xla=False):
        self.config, self.strategy = config, strategy
        self.loss_weights = view(config, losses.Weights)
        self.global_batch = config.batch_size * strategy.num_replicas_in_sync
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(precision)  # captured by each layer as it is built
        try:
            with strategy.scope():
                keras.utils.set_random_seed(config.seed)
                self.nets = networks.build(view(config, networks.Shape))
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
        # what the losses call: the networks themselves, or with --remat each call recomputed in the backward pass
        self.loss_nets = {name: Rematerialized(net) for name, net in self.nets.items()} if config.remat else self.nets
        self._generator_fn = tf.function(self._generator_grads, jit_compile=xla, autograph=False)
        self._discriminator_fn = tf.function(self._discriminator_grads, jit_compile=xla, autograph=False)
        self._replica_fn = self._replica_step
        if xla and strategy.num_replicas_in_sync == 1:  # nothing to all-reduce: one XLA program for the whole step
            self._replica_fn = tf.function(self._replica_step, jit_compile=True, autograph=False)
        self.train_step = tf.function(self._train_step, autograph=False)

    def _optimizer(self, steps_per_epoch, precision):
        c = self.config
        schedule = LinearDecayAfter(c.lr, steps_per_epoch, c.n_epochs, c.n_epochs_decay)
        optimizer = SummedAdam(schedule, beta_1=c.beta1, beta_2=c.beta2, epsilon=c.adam_epsilon)
        return keras.optimizers.LossScaleOptimizer(optimizer) if precision == "mixed_float16" else optimizer

    def _mean(self, per_example):
        return {name: tf.nn.compute_average_loss(value, global_batch_size=self.global_batch)
                for name, value in per_example.items()}

    def _generator_grads(self, real_a, real_b):
        with tf.GradientTape() as tape:
            per_example, fakes = losses.generator_losses(self.loss_nets, real_a, real_b, self.loss_weights)
            terms = self._mean(per_example)
            scaled = self.g_opt.scale_loss(tf.add_n(list(terms.values())))
        return tape.gradient(scaled, self.g_vars), terms, fakes["fake_a"], fakes["fake_b"]

    def _discriminator_grads(self, real_a, real_b, pooled_a, pooled_b):
        judged = {}
        with tf.GradientTape() as tape:
            terms = self._mean(losses.discriminator_losses(self.loss_nets, real_a, real_b, pooled_a, pooled_b,
                                                           self.loss_weights, judged=judged))
            scaled = self.d_opt.scale_loss(tf.add_n(list(terms.values())))
        return tape.gradient(scaled, self.d_vars), terms, judged

    def _replica_step(self, real_a, real_b):
        g_grads, g_terms, fake_a, fake_b = self._generator_fn(real_a, real_b)
        pooled_a, pooled_b = self.pools["A"].query(fake_a), self.pools["B"].query(fake_b)
        d_grads, d_terms, judged = self._discriminator_fn(real_a, real_b, pooled_a, pooled_b)
        sums = self._health_sums(fake_b, real_b, fake_a, real_a)
        g_summed, d_summed, sums = self._update(g_grads, d_grads, sums)
        health = self._health(judged, g_summed, d_summed, sums, (pooled_a, fake_a), (pooled_b, fake_b))
        return {**g_terms, **d_terms, "health": health}

    def _update(self, g_grads, d_grads, sums):
        """Apply the gradients summed over the replicas: (the summed gradients of each optimizer, `sums` summed
        over the replicas, which ride in the gradients' one all-reduce)."""
        summed = g_grads + d_grads + sums  # one replica's are the sum
        if self.strategy.num_replicas_in_sync > 1:
            summed = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, summed)
        g_summed, d_summed = summed[:len(g_grads)], summed[len(g_grads):len(g_grads) + len(d_grads)]
        self.g_opt.apply_gradients(zip(g_summed, self.g_vars))
        self.d_opt.apply_gradients(zip(d_summed, self.d_vars))
        return g_summed, d_summed, summed[len(g_grads) + len(d_grads):]

    def _health_sums(self, *images):
        """The per-replica sums the batch variances need: (sum, sum of squares) of each batch of `images`."""
        return [total for batch in images for total in batch_sums(batch)]

    def _health(self, judged, g_summed, d_summed, sums, *pooled_and_fakes):
        """The HEALTH signals as one vector (see HEALTH)."""
        health = dict(judged)
        for optimizer, grads, names in ((self.g_opt, g_summed, ("G_AB", "G_BA")),
                                        (self.d_opt, d_summed, ("D_A", "D_B"))):
            scale = optimizer.dynamic_scale if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else 1.0
            first = len(self.nets[names[0]].trainable_variables)
            for name, part in zip(names, (grads[:first], grads[first:])):
                health[f"{name}_grad_norm"] = tf.linalg.global_norm(part) / tf.cast(scale, tf.float32)
        for domain, (pooled, fakes) in zip("AB", pooled_and_fakes):
            health[f"pool_{domain}_swap_rate"] = swap_rate(pooled, fakes)
        names = ("G_AB_output_variance", "B_variance", "G_BA_output_variance", "A_variance")
        for i, name in enumerate(names):
            health[name] = batch_variance(sums[2 * i], sums[2 * i + 1], self.global_batch)
        return tf.stack([health[name] for name in HEALTH])

    def _train_step(self, real_a, real_b, requests):
        """One step on a global batch (per-replica values) -> the global mean losses, and "requests": how many
        replicas were asked to [stop, save] (requests(...)). Any worker's SIGTERM or due clock-time save reaches
        every worker this way, so all of them save the same step together."""
        per_replica = self.strategy.run(self._replica_fn, args=(real_a, real_b))
        results = {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                   for name, value in per_replica.items() if name != "health"}
        # every health signal is a mean or the same on every replica: their mean, in one reduce
        results["health"] = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica["health"], axis=None)
        results["requests"] = self.strategy.reduce(tf.distribute.ReduceOp.SUM,
                                                   self.strategy.run(tf.identity, (requests,)), axis=None)
        self.step.assign_add(1)
        return results

    def checkpointables(self):
        """Everything that makes the next step what it would have been: nets, optimizers (with their iterations
        and loss scale), pools (with their draw counters) and the step."""
        return {**self.nets, "g_opt": self.g_opt, "d_opt": self.d_opt, "pool_A": self.pools["A"],
                "pool_B": self.pools["B"], "step": self.step}


def requests(stop=False, save=False):
    """A worker's requests for the step: stop after it (and save), or save after it."""
    return tf.constant([float(stop), float(save)])
