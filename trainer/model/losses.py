"""CycleGAN losses, per example, so the distributed step can average them over the global batch exactly once.

Naming: G_AB translates A to B, G_BA translates B to A; D_A judges domain A images, D_B judges domain B.

Written in Keras's ops, which are TensorFlow's own ops under TensorFlow, so that the JAX benchmark
(benchmarks/xla_step_jax.py) steps exactly these terms.
"""
import dataclasses

from keras import ops


@dataclasses.dataclass(frozen=True)
class Weights:
    """The loss terms' kind and weights (the TrainConfig fields of the same names)."""
    gan_mode: str
    lambda_a: float
    lambda_b: float
    lambda_identity: float


def _per_example(x):
    return ops.mean(ops.cast(x, "float32"), axis=list(range(1, len(x.shape))))


def gan_loss(logits, target_is_real, mode):
    """LSGAN: mean squared distance of the patch logits to 1 (real) or 0 (fake); vanilla: BCE on logits."""
    target = ops.ones_like(logits) if target_is_real else ops.zeros_like(logits)
    if mode == "lsgan":
        return _per_example(ops.square(logits - target))
    return _per_example(ops.binary_crossentropy(target, logits, from_logits=True))


def l1(a, b):
    return _per_example(ops.abs(a - b))


def _as_one_batch(net, *batches, training=True):
    """net over several batches of one size in one call, split back. Both norm choices (instance, none) work per
    image, so each image's result is its own; one call on twice the images runs faster than two at the small
    batches CycleGAN trains with (the reference's is 1)."""
    out = net(ops.concatenate(batches, axis=0), training=training)
    return ops.split(out, len(batches), axis=0)


def generator_losses(nets, real_a, real_b, weights: Weights, training=True):
    """All generator terms, per example, and the fakes for the discriminators.

    Both cycle terms depend on both generators (A -> G_AB -> G_BA -> A and B -> G_BA -> G_AB -> B), so each
    generator gets gradients from both. The identity passes (G_AB on B, G_BA on A) share a call with the
    translations; with lambda_identity 0 they are not run at all.
    """
    identity = weights.lambda_identity > 0
    if identity:
        fake_b, same_b = _as_one_batch(nets["G_AB"], real_a, real_b, training=training)
        fake_a, same_a = _as_one_batch(nets["G_BA"], real_b, real_a, training=training)
    else:
        fake_b, fake_a = nets["G_AB"](real_a, training=training), nets["G_BA"](real_b, training=training)
    rec_a = nets["G_BA"](fake_b, training=training)
    rec_b = nets["G_AB"](fake_a, training=training)
    terms = {
        "G_AB_gan": gan_loss(nets["D_B"](fake_b, training=training), True, weights.gan_mode),
        "G_BA_gan": gan_loss(nets["D_A"](fake_a, training=training), True, weights.gan_mode),
        "cycle_A": weights.lambda_a * l1(rec_a, real_a),
        "cycle_B": weights.lambda_b * l1(rec_b, real_b),
    }
    if identity:
        terms["identity_A"] = weights.lambda_identity * weights.lambda_b * l1(same_b, real_b)
        terms["identity_B"] = weights.lambda_identity * weights.lambda_a * l1(same_a, real_a)
    return terms, {"fake_a": fake_a, "fake_b": fake_b, "rec_a": rec_a, "rec_b": rec_b}


def discriminator_losses(nets, real_a, real_b, pooled_fake_a, pooled_fake_b, weights: Weights, training=True,
                         judged=None):
    """Each discriminator: half of (real judged real + pooled fake judged fake), per example; real and fake
    judged in one call. `judged`, a dict, gets each one's mean output on real and on fake images (D_A_real,
    D_A_fake, ...): the training's health signals, from the same call."""
    def discriminator_loss(name, real, fake):
        on_real, on_fake = _as_one_batch(nets[name], real, ops.stop_gradient(fake), training=training)
        if judged is not None:
            judged[f"{name}_real"], judged[f"{name}_fake"] = (ops.mean(ops.cast(x, "float32"))
                                                              for x in (on_real, on_fake))
        return 0.5 * (gan_loss(on_real, True, weights.gan_mode) + gan_loss(on_fake, False, weights.gan_mode))

    return {"D_A": discriminator_loss("D_A", real_a, pooled_fake_a),
            "D_B": discriminator_loss("D_B", real_b, pooled_fake_b)}
