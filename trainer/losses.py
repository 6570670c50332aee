"""CycleGAN losses, per example, so the distributed step can average them over the global batch exactly once.

Naming: G_AB translates A to B, G_BA translates B to A; D_A judges domain A images, D_B judges domain B.
"""
import tensorflow as tf


def _per_example(x):
    return tf.reduce_mean(tf.cast(x, tf.float32), axis=list(range(1, len(x.shape))))


def gan_loss(logits, target_is_real, mode):
    """LSGAN: mean squared distance of the patch logits to 1 (real) or 0 (fake); vanilla: BCE on logits."""
    target = tf.ones_like(logits) if target_is_real else tf.zeros_like(logits)
    if mode == "lsgan":
        return _per_example(tf.square(logits - target))
    return _per_example(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits))


def l1(a, b):
    return _per_example(tf.abs(a - b))


def generator_losses(nets, real_a, real_b, config, training=True):
    """All generator terms, per example, and the fakes for the discriminators.

    Both cycle terms depend on both generators (A -> G_AB -> G_BA -> A and B -> G_BA -> G_AB -> B), so each
    generator gets gradients from both. With lambda_identity 0 the identity passes are not run at all.
    """
    fake_b = nets["G_AB"](real_a, training=training)
    fake_a = nets["G_BA"](real_b, training=training)
    rec_a = nets["G_BA"](fake_b, training=training)
    rec_b = nets["G_AB"](fake_a, training=training)
    terms = {
        "G_AB_gan": gan_loss(nets["D_B"](fake_b, training=training), True, config.gan_mode),
        "G_BA_gan": gan_loss(nets["D_A"](fake_a, training=training), True, config.gan_mode),
        "cycle_A": config.lambda_a * l1(rec_a, real_a),
        "cycle_B": config.lambda_b * l1(rec_b, real_b),
    }
    if config.lambda_identity > 0:
        terms["identity_A"] = config.lambda_identity * config.lambda_b * l1(nets["G_AB"](real_b, training=training),
                                                                            real_b)
        terms["identity_B"] = config.lambda_identity * config.lambda_a * l1(nets["G_BA"](real_a, training=training),
                                                                            real_a)
    return terms, {"fake_a": fake_a, "fake_b": fake_b, "rec_a": rec_a, "rec_b": rec_b}


def discriminator_losses(nets, real_a, real_b, pooled_fake_a, pooled_fake_b, config, training=True):
    """Each discriminator: half of (real judged real + pooled fake judged fake), per example."""
    def one(net, real, fake):
        return 0.5 * (gan_loss(net(real, training=training), True, config.gan_mode)
                      + gan_loss(net(tf.stop_gradient(fake), training=training), False, config.gan_mode))

    return {"D_A": one(nets["D_A"], real_a, pooled_fake_a), "D_B": one(nets["D_B"], real_b, pooled_fake_b)}
