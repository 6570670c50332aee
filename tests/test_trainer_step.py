"""The distributed training step on CPU: MirroredStrategy over two logical devices, XLA, mixed precision."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from trainer.config import PRESETS
from trainer.model.step import HEALTH, CycleGANTrainer, requests
from trainer.run.strategy import distribute, mirrored

SMALL = dataclasses.replace(PRESETS["tiny"], ngf=8, ndf=8, n_blocks=2, crop_size=32, load_size=36)


def global_batches(steps, size, seed=0):
    rng = np.random.default_rng(seed)
    a, b = (rng.uniform(-1, 1, (steps, size, 32, 32, 3)).astype(np.float32) for _ in range(2))
    return tf.data.Dataset.from_tensor_slices((a, b))


def train(strategy, config, steps, signals=None, **kwargs):
    """(the trainer, each step's losses) after `steps` steps; `signals`, a list, gets each step's health signals."""
    trainer = CycleGANTrainer(config, strategy, steps_per_epoch=10, **kwargs)
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    history = []
    for real_a, real_b in global_batches(steps, global_batch):
        results = trainer.train_step(*distribute(strategy, (real_a, real_b)), requests(save=True))
        assert results.pop("requests").numpy().tolist() == [0, strategy.num_replicas_in_sync]  # every replica's
        health = dict(zip(HEALTH, results.pop("health").numpy().tolist()))
        if signals is not None:
            signals.append(health)
        history.append({k: float(v) for k, v in results.items()})
    assert int(trainer.step.numpy()) == steps
    return trainer, history


@pytest.mark.slow
def test_two_replicas_match_one_device_on_the_same_global_batch(two_cpus):
    # Adam divides by sqrt(v) + epsilon, so a gradient that is float noise (near zero) becomes a full step; the
    # reference's epsilon 1e-8 amplifies the device split's reassociation noise 10x more than Keras's 1e-7, which
    # is what this test of the split itself uses.
    config = dataclasses.replace(SMALL, adam_epsilon=1e-7)
    signals_two, signals_one = [], []
    two, losses_two = train(two_cpus, dataclasses.replace(config, batch_size=2), 3, signals_two)
    one, losses_one = train(tf.distribute.OneDeviceStrategy("CPU:0"), dataclasses.replace(config, batch_size=4), 3,
                            signals_one)
    assert two.global_batch == one.global_batch == 4
    for step_two, step_one in zip(losses_two, losses_one):
        for name in step_one:
            assert step_two[name] == pytest.approx(step_one[name], rel=1e-4, abs=1e-6), name
    # the health signals are of the global batch however it is split: the variances from sums all-reduced with
    # the gradients, the gradient norms of the summed gradients
    for step_two, step_one in zip(signals_two, signals_one):
        for name in ("G_AB_grad_norm", "G_BA_grad_norm", "G_AB_output_variance", "B_variance", "A_variance"):
            assert step_two[name] == pytest.approx(step_one[name], rel=1e-3), name
        assert step_one["A_variance"] > 0 and step_one["G_AB_grad_norm"] > 0
    # Kernels only: a conv bias followed by instance norm has a true gradient of zero, so what it gets is float
    # noise, which Adam scales up to full learning-rate steps whatever the device split. Kernel entries whose
    # gradient is near zero move by Adam's noise too, less: up to 3.4e-5 of the 6e-4 three steps can move a weight,
    # on an Intel Xeon with AMX, whose oneDNN kernels sum in another order than an AMD EPYC's (1e-5 held there).
    for name in ("G_AB", "G_BA", "D_A", "D_B"):
        for w_two, w_one in zip(two.nets[name].weights, one.nets[name].weights):
            if "kernel" in w_one.path:
                np.testing.assert_allclose(w_two.numpy(), w_one.numpy(), rtol=1e-3, atol=5e-5, err_msg=w_one.path)
    assert int(two.g_opt.iterations.numpy()) == int(one.g_opt.iterations.numpy()) == 3
    moved = [np.abs(w.numpy()).sum() for w in one.nets["G_AB"].trainable_weights if "bias" in w.path]
    assert sum(moved) > 0  # biases start at zero: the step really trained


def test_remat_recomputes_activations_and_trains_exactly_alike(two_cpus):
    """--remat: the same losses and weights after two steps on two replicas, and the backward pass holds a
    recomputation of the networks (their convolutions run again in it)."""
    plain, losses_plain = train(two_cpus, SMALL, 2)
    remat, losses_remat = train(two_cpus, dataclasses.replace(SMALL, remat=True), 2)
    for step_remat, step_plain in zip(losses_remat, losses_plain):
        assert step_remat == pytest.approx(step_plain, rel=1e-5)
    for name in ("G_AB", "D_A"):
        for w_remat, w_plain in zip(remat.nets[name].weights, plain.nets[name].weights):
            np.testing.assert_allclose(w_remat.numpy(), w_plain.numpy(), rtol=1e-5, atol=1e-7, err_msg=w_plain.path)
    real = global_batches(1, 2).get_single_element()

    def convolutions(trainer):
        graph = trainer.train_step.get_concrete_function(*distribute(two_cpus, real), requests()).graph
        functions = graph.as_graph_def().library.function
        return sum(node.op == "Conv2D" for function in functions for node in function.node_def)

    assert convolutions(remat) > convolutions(plain)


def test_cpu_replicas_are_summed_on_one_device_not_by_collectives(two_cpus):
    trainer = CycleGANTrainer(SMALL, two_cpus, steps_per_epoch=10)
    real = global_batches(1, 2).get_single_element()
    step = trainer.train_step.get_concrete_function(*distribute(two_cpus, real), requests())
    kinds = {op.type for op in step.graph.get_operations()}
    assert not {kind for kind in kinds if kind.startswith("Collective")}
    assert "AddN" in kinds


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_xla_and_mixed_precision_train_with_finite_losses(precision, two_cpus):
    trainer, history = train(two_cpus, dataclasses.replace(SMALL, batch_size=1), 8, precision=precision, xla=True)
    assert set(history[0]) == {"G_AB_gan", "G_BA_gan", "cycle_A", "cycle_B", "identity_A", "identity_B", "D_A", "D_B"}
    assert all(np.isfinite(v) for step in history for v in step.values())
    for optimizer in (trainer.g_opt, trainer.d_opt):
        applied = int(optimizer.iterations.numpy())
        if precision == "mixed_float16":  # a step whose scaled gradients overflow is skipped and halves the scale
            scale = float(optimizer.dynamic_scale.numpy())
            assert 1 <= applied <= 8 and scale == optimizer.initial_scale / 2 ** (8 - applied)
        else:
            assert applied == 8
    compute = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}[precision]
    assert trainer.nets["G_AB"].layers[2].compute_dtype == compute


def test_adam_is_the_references_pytorch_adam(two_cpus):
    trainer = CycleGANTrainer(PRESETS["reference"], two_cpus, steps_per_epoch=10)
    for optimizer in (trainer.g_opt, trainer.d_opt):
        assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.5, 0.999, 1e-8)


@pytest.mark.parametrize("replicas", [2, 1])
def test_adam_updates_each_variable_in_one_kernel_and_matches_keras_adam(replicas, two_cpus):
    import keras

    from trainer.model.step import SummedAdam

    # Two replicas update outside XLA; one replica compiles its whole step with XLA, as the trainer does.
    strategy = two_cpus if replicas == 2 else mirrored(["CPU:0"])
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=shape).astype(np.float32) for shape in ([3, 3, 2, 4], [4], [])]
    grads = [[rng.normal(size=w.shape).astype(np.float32) for w in initial] for _ in range(5)]
    with strategy.scope():
        ours_vars, theirs_vars = ([tf.Variable(w) for w in initial] for _ in range(2))
        ours, theirs = (kind(1e-2, beta_1=0.5, beta_2=0.999, epsilon=1e-8)
                        for kind in (SummedAdam, keras.optimizers.Adam))
        ours.build(ours_vars)
        theirs.build(theirs_vars)

    def replica_step(step_grads):  # ours is given the replicas' sum; Keras's sums the replicas' shares itself
        ours.apply_gradients(zip(step_grads, ours_vars))
        theirs.apply_gradients(zip([g / replicas for g in step_grads], theirs_vars))

    replica_fn = replica_step if replicas > 1 else tf.function(replica_step, jit_compile=True)
    step = tf.function(lambda step_grads: strategy.run(replica_fn, args=(step_grads,)))
    for step_grads in grads:
        step([tf.constant(g) for g in step_grads])
    for mine, keras_own in zip(ours_vars, theirs_vars):
        copies = [c.numpy() for c in mine.values]
        assert all(np.array_equal(copy, copies[0]) for copy in copies)
        # Adam's first steps move each weight by about the learning rate; the kernel's float32 1 - beta_2 is
        # 1.3e-5 off Keras's, so the two agree to far less than a step's size.
        np.testing.assert_allclose(copies[0], keras_own.values[0].numpy(), rtol=0, atol=1e-6)
    assert int(ours.iterations.numpy()) == int(theirs.iterations.numpy()) == 5
    if replicas > 1:
        graph = step.get_concrete_function([tf.constant(g) for g in grads[0]]).graph
        ops = [op.type for op in graph.get_operations()]
        assert ops.count("ResourceApplyAdam") == replicas * len(initial)  # one kernel per variable and device


def test_each_replica_keeps_a_pool_of_its_own(two_cpus):
    from trainer.model.pool import ImagePool

    with two_cpus.scope():
        pool = ImagePool(3, [1, 1, 1], seed=1)
    query = tf.function(lambda x: two_cpus.run(pool.query, args=(x,)))
    for i in range(3):  # replica r queries images 10 r + 1, 2, 3
        query(two_cpus.experimental_distribute_values_from_function(
            lambda ctx: tf.fill([1, 1, 1, 1], float(10 * ctx.replica_id_in_sync_group + i + 1))))
    assert [v.numpy().ravel().tolist() for v in pool.images.values] == [[1, 2, 3], [11, 12, 13]]
    assert [int(v.numpy()) for v in pool.filled.values] == [3, 3]
