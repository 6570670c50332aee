"""The networks, losses, image pool and schedule against the reference's own numbers and rules."""
import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.config import PRESETS
from trainer.model import losses, networks
from trainer.model.pool import ImagePool
from trainer.model.schedule import LinearDecayAfter

TINY = PRESETS["tiny"]


def test_reference_parameter_counts():
    nets = networks.build(PRESETS["reference"])
    assert nets["G_AB"].count_params() == 11_378_179
    assert nets["G_BA"].count_params() == 11_378_179
    assert nets["D_A"].count_params() == 2_764_737
    assert nets["D_B"].count_params() == 2_764_737
    six = networks.resnet_generator(n_blocks=6)
    assert six.count_params() == 11_378_179 - 3 * 2 * (3 * 3 * 256 * 256 + 256)
    resize = networks.resnet_generator(upsample_mode="resize_conv")
    assert resize.count_params() == 11_378_179  # same weights, different upsampling


def test_the_nets_and_losses_build_under_jax_without_tensorflow():
    """The same nets and loss terms under Keras's JAX backend (benchmarks/xla_step_jax.py): the reference's
    parameter counts, the size check, and not one TensorFlow import."""
    import json
    import subprocess
    import sys

    from tests.helpers import REPO

    script = """if True:
        import json, sys
        import numpy as np
        from trainer.config import PRESETS
        from trainer.model import losses, networks
        nets = networks.build(PRESETS["reference"])
        counts = {name: net.count_params() for name, net in nets.items()}
        try:
            nets["G_AB"](np.zeros((1, 30, 30, 3), "float32"))
            refused = False
        except ValueError as err:
            refused = "multiples of 4" in str(err)
        logits = np.linspace(-2, 2, 8, dtype="float32").reshape(2, 2, 2, 1)
        lsgan = np.asarray(losses.gan_loss(logits, True, "lsgan")).tolist()
        print(json.dumps({"counts": counts, "refused": refused, "lsgan": lsgan,
                          "tensorflow": "tensorflow" in sys.modules}))
    """
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["counts"] == {"G_AB": 11_378_179, "G_BA": 11_378_179, "D_A": 2_764_737, "D_B": 2_764_737}
    assert result["refused"] and not result["tensorflow"]
    logits = np.linspace(-2, 2, 8, dtype="float32").reshape(2, 2, 2, 1)
    np.testing.assert_allclose(result["lsgan"], ((logits - 1) ** 2).mean(axis=(1, 2, 3)), rtol=1e-6)


def test_discriminator_receptive_field_is_70():
    # Without normalisation (instance norm's statistics would spread every pixel everywhere) a PatchGAN logit at
    # row i depends on input rows 8i - 23 .. 8i + 46: 70 rows. Push one input pixel forward (forward-mode
    # derivative: exactly zero where there is no path) and see which logits it reaches.
    disc = networks.patch_discriminator(ndf=8, norm_kind="none")
    base = tf.constant(np.random.default_rng(0).uniform(-1, 1, (1, 160, 160, 3)), tf.float32)
    for row, col in ((80, 80), (0, 0), (159, 100)):
        tangent = np.zeros(base.shape, np.float32)
        tangent[0, row, col, :] = 1.0
        with tf.autodiff.ForwardAccumulator(base, tf.constant(tangent)) as acc:
            logits = disc(base)
        changed = acc.jvp(logits).numpy()[0, ..., 0] != 0
        out_rows, out_cols = changed.shape
        expect_rows = {i for i in range(out_rows) if 8 * i - 23 <= row <= 8 * i + 46}
        expect_cols = {j for j in range(out_cols) if 8 * j - 23 <= col <= 8 * j + 46}
        assert set(np.nonzero(changed.any(axis=1))[0]) == expect_rows
        assert set(np.nonzero(changed.any(axis=0))[0]) == expect_cols
        assert changed.sum() == len(expect_rows) * len(expect_cols)
    centre_rows = {i for i in range(out_rows) if 8 * i - 23 <= 80 <= 8 * i + 46}
    assert max(8 * i + 46 for i in centre_rows) - min(8 * i - 23 for i in centre_rows) + 1 == 70 + 8 * (
        len(centre_rows) - 1)


@pytest.mark.parametrize("upsample", ["transpose", "resize_conv"])
def test_generator_keeps_the_size_of_any_multiple_of_4(upsample):
    gen = networks.resnet_generator(ngf=8, n_blocks=1, upsample_mode=upsample)
    for height, width in ((64, 64), (68, 36), (32, 100), (8, 12)):
        out = gen(np.zeros((2, height, width, 3), np.float32))
        assert out.shape == (2, height, width, 3)
    for height, width in ((66, 64), (4, 8)):
        with pytest.raises(ValueError, match=f"multiples of 4 and at least 8; .*got {height}x{width}"):
            gen(np.zeros((1, height, width, 3), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiples of 4"):
        tf.function(gen, input_signature=[tf.TensorSpec([1, None, None, 3])])(tf.zeros([1, 64, 30, 3]))


def test_weights_initialised_as_the_reference():
    gen = networks.resnet_generator(ngf=32, n_blocks=2)
    kernels = np.concatenate([w.numpy().ravel() for w in gen.weights if "kernel" in w.path])
    biases = np.concatenate([w.numpy().ravel() for w in gen.weights if "bias" in w.path])
    assert abs(kernels.std() - 0.02) < 0.001 and abs(kernels.mean()) < 0.001
    assert not biases.any()
    assert not [w for w in gen.weights if "gamma" in w.path or "beta" in w.path]  # instance norm, no affine


def test_losses_match_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    np.testing.assert_allclose(losses.gan_loss(logits, True, "lsgan"), ((logits - 1) ** 2).mean(axis=(1, 2, 3)),
                               rtol=1e-5)
    np.testing.assert_allclose(losses.gan_loss(logits, False, "lsgan"), (logits ** 2).mean(axis=(1, 2, 3)),
                               rtol=1e-5)
    sigmoid = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(losses.gan_loss(logits, True, "vanilla"), -np.log(sigmoid).mean(axis=(1, 2, 3)),
                               rtol=1e-5)
    np.testing.assert_allclose(losses.gan_loss(logits, False, "vanilla"),
                               -np.log(1 - sigmoid).mean(axis=(1, 2, 3)), rtol=1e-5)
    a, b = rng.normal(size=(2, 3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(losses.l1(a, b), np.abs(a - b).mean(axis=(1, 2, 3)), rtol=1e-5)


class Counting:
    def __init__(self, net):
        self.net, self.calls, self.images = net, 0, 0

    def __call__(self, x, training=True):
        self.calls, self.images = self.calls + 1, self.images + x.shape[0]
        return self.net(x, training=training)


def _tiny_nets():
    config = dataclasses.replace(TINY, ngf=4, ndf=4, n_blocks=1)
    return config, networks.build(config)


def test_generator_terms_and_both_cycles_reach_both_generators():
    config, nets = _tiny_nets()
    rng = np.random.default_rng(2)
    real_a, real_b = (tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32) for _ in range(2))
    with tf.GradientTape(persistent=True) as tape:
        terms, fakes = losses.generator_losses(nets, real_a, real_b, config)
    assert set(terms) == {"G_AB_gan", "G_BA_gan", "cycle_A", "cycle_B", "identity_A", "identity_B"}
    assert all(t.shape == (2,) for t in terms.values())
    np.testing.assert_allclose(terms["cycle_A"], 10 * np.abs(fakes["rec_a"] - real_a).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(terms["identity_A"], 0.5 * 10 * np.abs(nets["G_AB"](real_b) - real_b).mean(
        axis=(1, 2, 3)), rtol=1e-4)
    for cycle in ("cycle_A", "cycle_B"):
        for gen in ("G_AB", "G_BA"):
            grads = tape.gradient(terms[cycle], nets[gen].trainable_variables)
            assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None) > 0, (cycle, gen)
        assert all(g is None for g in tape.gradient(terms[cycle], nets["D_A"].trainable_variables))

    counted = {name: Counting(net) for name, net in nets.items()}
    losses.generator_losses(counted, real_a, real_b, config)
    # 3 passes of 2 images per generator; the identity pass shares its call with the translation
    assert [(counted[g].calls, counted[g].images) for g in ("G_AB", "G_BA")] == [(2, 6), (2, 6)]
    counted = {name: Counting(net) for name, net in nets.items()}
    no_identity, _ = losses.generator_losses(counted, real_a, real_b, dataclasses.replace(config, lambda_identity=0))
    assert [(counted[g].calls, counted[g].images) for g in ("G_AB", "G_BA")] == [(2, 4), (2, 4)]
    assert set(no_identity) == {"G_AB_gan", "G_BA_gan", "cycle_A", "cycle_B"}


def test_discriminator_loss_is_halved():
    config, nets = _tiny_nets()
    real = tf.random.uniform([2, 32, 32, 3], -1, 1, seed=1)
    fake = tf.random.uniform([2, 32, 32, 3], -1, 1, seed=2)
    counted = {name: Counting(net) for name, net in nets.items()}
    d = losses.discriminator_losses(counted, real, real, fake, fake, config)
    assert (counted["D_A"].calls, counted["D_A"].images) == (1, 4)  # real and fake judged in one call
    expected = 0.5 * (((nets["D_A"](real) - 1) ** 2).numpy().mean(axis=(1, 2, 3))
                      + (nets["D_A"](fake) ** 2).numpy().mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(d["D_A"], expected, rtol=1e-5)


# XLA too: a one-replica step is compiled whole, the pools included
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_pool_follows_the_reference_rule(jit_compile):
    pool = ImagePool(50, [1, 1, 1], seed=7)
    query = tf.function(pool.query, jit_compile=jit_compile)
    history, returned_new, swaps_seen = [], 0, 0
    contents = []
    for step in range(1000):
        batch = np.array([2 * step, 2 * step + 1], np.float32).reshape(2, 1, 1, 1)
        before = sorted(contents)
        out = query(tf.constant(batch)).numpy().ravel()
        for value, new in zip(out, batch.ravel()):
            if len(contents) < 50:
                assert value == new  # filling: the new image comes back and is kept
                contents.append(new)
            elif value == new:
                returned_new += 1
            else:
                swaps_seen += 1
                assert value in before or value in batch.ravel()  # an image stored earlier
                contents[contents.index(value)] = new
        history.append(out)
        assert sorted(contents) == sorted(pool.images.numpy().ravel()[:int(pool.filled.numpy())])
    after_fill = 2000 - 50
    assert abs(returned_new / after_fill - 0.5) < 0.04  # p = 0.5, 1950 draws: 4 standard deviations is 0.045

    checkpoint = tf.train.Checkpoint(pool=pool)
    path = checkpoint.write(f"ram://pool-{jit_compile}/ckpt")
    stored, draws = pool.images.numpy().copy(), int(pool.draws.numpy())
    restored = ImagePool(50, [1, 1, 1], seed=7)
    tf.train.Checkpoint(pool=restored).read(path).assert_consumed()
    np.testing.assert_array_equal(restored.images.numpy(), stored)
    assert int(restored.filled.numpy()) == 50 and int(restored.draws.numpy()) == draws
    nxt = tf.constant(np.array([-1.0, -2.0], np.float32).reshape(2, 1, 1, 1))
    np.testing.assert_array_equal(tf.function(restored.query, jit_compile=jit_compile)(nxt), query(nxt))  # same draws


def test_pool_of_size_zero_passes_through():
    pool = ImagePool(0, [2, 2, 3])
    x = tf.random.uniform([3, 2, 2, 3])
    np.testing.assert_array_equal(pool.query(x), x)


def test_schedule_matches_reference_formula():
    steps_per_epoch, n_epochs, n_decay = 7, 100, 100
    schedule = LinearDecayAfter(2e-4, steps_per_epoch, n_epochs, n_decay)

    def reference(epoch):  # the authors' LambdaLR rule, epoch counted from 0, epoch_count 1
        return 2e-4 * (1.0 - max(0, epoch + 1 - n_epochs) / float(n_decay + 1))

    for step in (0, 1, 6, 7, 99 * 7 + 6, 100 * 7, 100 * 7 + 6, 150 * 7 + 3, 199 * 7 + 6):
        assert float(schedule(step)) == pytest.approx(reference(step // steps_per_epoch), rel=1e-6), step
    assert float(schedule(200 * 7)) == pytest.approx(0.0, abs=1e-12)
    assert float(schedule(10**6)) == 0.0
    clone = LinearDecayAfter.from_config(schedule.get_config())
    assert float(clone(150 * 7)) == float(schedule(150 * 7))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_norms_and_outputs_float32(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        config = dataclasses.replace(TINY, n_blocks=2)
        nets = networks.build(config)
        real = tf.random.uniform([2, 64, 64, 3], -1, 1, seed=3)
        fake = nets["G_AB"](real)
        logits = nets["D_B"](fake)
        assert fake.dtype == tf.float32 and logits.dtype == tf.float32
        assert np.isfinite(fake.numpy()).all() and np.isfinite(logits.numpy()).all()
        half = policy.split("_")[1]
        convs = [layer for layer in nets["G_AB"].layers if isinstance(layer, keras.layers.Conv2D)]
        assert convs and all(layer.compute_dtype == half for layer in convs)
        norms = [layer for layer in nets["G_AB"].layers if isinstance(layer, networks.InstanceNorm)]
        assert norms and all(layer.compute_dtype == "float32" for layer in norms)
        terms, _ = losses.generator_losses(nets, real, real * 0.5, config)
        assert all(np.isfinite(t.numpy()).all() for t in terms.values())
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("graph", [False, True])
def test_instance_norm_and_crop_compute_what_kerass_own_layers_do_with_their_gradients(graph):
    """Our InstanceNorm (its gradient written out) and crop against Keras's GroupNormalization(groups=-1) and
    Cropping2D: the same outputs, and the same gradients of a loss that weighs every output differently."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2, 3, (3, 9, 7, 5)).astype("float32"))
    weights = tf.constant(rng.normal(0, 1, (3, 9, 7, 5)).astype("float32"))
    pairs = [(networks.InstanceNorm(epsilon=1e-5),
              keras.layers.GroupNormalization(groups=-1, center=False, scale=False, epsilon=1e-5)),
             (networks.DropFirstRowAndColumn(), keras.layers.Cropping2D(((1, 0), (1, 0))))]

    def value_and_gradient(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y * weights[:, :y.shape[1], :y.shape[2]])
        return y, tape.gradient(loss, x)

    run = tf.function(value_and_gradient) if graph else value_and_gradient
    for ours, theirs in pairs:
        (y, dx), (y_keras, dx_keras) = run(ours), run(theirs)
        assert y.shape == y_keras.shape
        np.testing.assert_allclose(y.numpy(), y_keras.numpy(), atol=1e-5)
        np.testing.assert_allclose(dx.numpy(), dx_keras.numpy(), atol=1e-5)
