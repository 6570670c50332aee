"""TrainConfig: one dataclass for a training run, and its named presets.

`reference` is exactly the paper's networks and hyperparameters at 256 px; `tiny` is small enough for CPU tests
and the demo. Every field is also a `cyclegan train` flag, applied on top of the chosen preset.
"""
import dataclasses

from preprocessing import exit_status
from preprocessing.flags import config_field
from trainer.model.scale_modes import MODES

IDENTITY, HOW_TO_RUN = "identity", "how_to_run"
# the evaluation's errors (report keys, lower is better) that rank checkpoints and runs, in --best_metric auto's order
RANKED_ERRORS = ("ground_truth_mae", "fid", "kid", "cycle_mae")


def identity(default, help, **bounds):
    """A field of what is trained: a resumed run must keep its value (or pass --force_resume)."""
    return config_field(default, help, role=IDENTITY, **bounds)


def how_to_run(default, help, **bounds):
    """A field of how the run goes, not what it trains: a resumed run may change it freely."""
    return config_field(default, help, role=HOW_TO_RUN, **bounds)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # networks
    input_nc: int = identity(3, "image channels")
    ngf: int = identity(64, "generator base width", minimum=1)
    ndf: int = identity(64, "discriminator base width", minimum=1)
    n_blocks: int = identity(9, "residual blocks in each generator (the reference: 9 at 256 px, 6 at 128 px)",
                             minimum=0)
    n_layers_d: int = identity(3, "PatchGAN stride layers (3: 70x70 patches)", minimum=1)
    norm: str = identity("instance", "normalisation layers", choices=("instance", "none"))
    upsample: str = identity("transpose", "generator upsampling: stride-2 transposed conv (reference) or nearest "
                             "resize + conv (no checkerboard artifacts)", choices=("transpose", "resize_conv"))
    # losses
    gan_mode: str = identity("lsgan", "adversarial loss", choices=("lsgan", "vanilla"))
    lambda_a: float = identity(10.0, "weight of the cycle loss A -> B -> A", minimum=0.0)
    lambda_b: float = identity(10.0, "weight of the cycle loss B -> A -> B", minimum=0.0)
    lambda_identity: float = identity(0.5, "identity loss weight, times lambda; 0 skips the identity passes",
                                      minimum=0.0)
    pool_size: int = identity(50, "image pool per direction for the discriminators; 0 disables it", minimum=0)
    # optimisation
    lr: float = identity(2e-4, "Adam learning rate", minimum=0.0)
    beta1: float = identity(0.5, "Adam beta1")
    beta2: float = identity(0.999, "Adam beta2")
    adam_epsilon: float = identity(1e-8, "Adam epsilon (the reference's PyTorch default; Keras's is 1e-7)")
    n_epochs: int = identity(100, "epochs at the initial learning rate", minimum=0)
    n_epochs_decay: int = identity(100, "epochs of linear decay after those", minimum=0)
    # data
    preprocess: str = identity("resize_and_crop", "how an image is scaled and cropped (the reference's modes, "
                               "trainer/model/scale_modes.py): resize_and_crop: to a load_size square, then a "
                               "crop_size crop; crop: a crop of the image as stored; scale_width_and_crop: width to "
                               "load_size, aspect kept, then a crop; scale_width and none: whole images (at test "
                               "time; training needs a crop mode)", choices=MODES)
    load_size: int = identity(286, "the size the mode scales to before cropping (resize_and_crop: a square; "
                              "scale_width*: the width)")
    crop_size: int = identity(256, "random crop size used for training (a multiple of 4)")
    batch_size: int = identity(1, "images per domain per replica in a step", minimum=1)
    seed: int = identity(0, "random seed of weights, data order, augmentation and the image pools")
    # the run
    data: str = how_to_run("", "the --output folder of `cyclegan preprocess` (local or gs://)")
    model_dir: str = how_to_run("", "where the trained weights go (local, gs:// or ram://)")
    init_from: str = how_to_run("", "start a new run from the networks of this model directory (its newest "
                                     "checkpoint; one `cyclegan import` wrote, say) or checkpoint prefix: weights "
                                     "only, with fresh optimizers at step 0. A resumed run ignores it")
    steps: int = how_to_run(0, "train this many steps; 0: --epochs, or n_epochs + n_epochs_decay", minimum=0)
    epochs: int = how_to_run(0, "train this many epochs; 0: n_epochs + n_epochs_decay", minimum=0)
    strategy: str = how_to_run("auto", "auto: several workers in TF_CONFIG -> multi_worker, else mirrored over all "
                               "GPUs, else mirrored over the CPU",
                               choices=("auto", "multi_worker", "mirrored", "one_device"))
    cpu_replicas: int = how_to_run(1, "without GPUs, split the CPU into this many replicas", minimum=1)
    peer_timeout: int = how_to_run(300, "several workers: seconds without an answer from a peer worker before the "
                                   f"others give up and exit with {exit_status.PREEMPTED}, so the whole group can "
                                   "restart", minimum=1)
    startup_timeout: int = how_to_run(900, "several workers: seconds a worker waits at start for every peer to "
                                      f"join before it exits with {exit_status.PEERS_MISSING}, naming the ones that "
                                      "never did", minimum=1)
    first_start_timeout: int = how_to_run(0, "several workers: at the run's first start (its model directory holds "
                                          "no run.json yet), wait this many seconds for every peer instead of "
                                          "--startup_timeout, then exit with "
                                          f"{exit_status.NEVER_GATHERED} instead of {exit_status.PEERS_MISSING} "
                                          "(0: every start waits --startup_timeout)", minimum=0)
    collective: str = how_to_run("auto", "several workers: the all-reduce between them (auto: NCCL when the workers "
                                 "have GPUs, TensorFlow's ring over gRPC on CPUs)", choices=("auto", "nccl", "ring"))
    bytes_per_pack: int = how_to_run(32 << 20, "several workers: gradients are all-reduced in packs of about this "
                                     "many bytes (0: one pack)", minimum=0)
    stall_minutes: float = how_to_run(0.0, f"end the process with exit {exit_status.STALLED} when no step completes "
                                      "for this many minutes: a wedged collective or device (0: the larger of 30 "
                                      "minutes, 20x the median step and 2x the longest gap between steps so far)",
                                      minimum=0.0)
    lease_timeout: int = how_to_run(120, "a model directory whose writer's heartbeat stopped this many seconds ago "
                                    "may be taken over by another run", minimum=10)
    max_restarts_without_progress: int = how_to_run(5, f"exit with {exit_status.NO_PROGRESS} when this many starts "
                                                    "in a row resumed from the step this one would (a restart "
                                                    "loop); 0: no limit", minimum=0)
    precision: str = identity("float32", "compute precision", choices=("float32", "mixed_float16", "mixed_bfloat16"))
    xla: str = how_to_run("auto", "compile each replica's losses and gradients with XLA (auto: on GPUs)",
                          choices=("auto", "on", "off"))
    remat: bool = how_to_run(False, "recompute each network's activations in the backward pass instead of keeping "
                             "them: less memory for large crops, more time per step (benchmarks/RESULTS.md, "
                             "\"Training memory against the crop size\")")
    xla_cache: bool = how_to_run(True, "keep XLA's compiled functions in --model_dir/xla_cache, so that a "
                                 "restarted run loads them instead of compiling again")
    log_every: int = how_to_run(10, "print progress and write scalar summaries every this many steps", minimum=1)
    checkpoint_every: int = how_to_run(500, "save a full-state checkpoint every this many steps (and at the end)",
                                       minimum=0)
    checkpoint_minutes: float = how_to_run(0.0, "also save when this many minutes passed since the last save "
                                           "(0: by step only): bounds the work a preemption or crash loses",
                                           minimum=0.0)
    keep_checkpoints: int = how_to_run(3, "keep this many of the latest checkpoints", minimum=1)
    force_resume: bool = how_to_run(False, "resume even when the model directory's run used another config or "
                                    "dataset")
    image_every: int = how_to_run(500, "write translated held-out images to TensorBoard every this many steps",
                                  minimum=0)
    summary_images: int = how_to_run(4, "held-out images per domain in those summaries", minimum=1)
    profile_start: int = how_to_run(0, "trace the steps from this one with the TensorFlow profiler (0: off)",
                                    minimum=0)
    profile_steps: int = how_to_run(5, "how many steps the profiler traces", minimum=1)
    eval_every: int = how_to_run(0, "evaluate on --eval_data every this many steps and at the end (0: never)",
                                 minimum=0)
    eval_data: str = how_to_run("", "a raw dataset root with testA/ testB/ (and testA_truth/, as `cyclegan synth` "
                                "writes) for that evaluation")
    eval_images: int = how_to_run(0, "evaluate on at most this many test images per domain (0: all)", minimum=0)
    stop_on_collapse: bool = how_to_run(False, "end the run at a health alarm (a discriminator that wins outright, "
                                        "collapsed generator outputs, an exploding gradient; docs/train.md) "
                                        f"without saving, with exit status {exit_status.COLLAPSED}")
    best_metric: str = how_to_run("auto", "keep the state of the evaluation with the lowest of this metric in "
                                  "--model_dir/checkpoints/best/, outside the rotation (auto: the first of "
                                  "ground_truth_mae, fid, kid, cycle_mae that the evaluation computes; none: keep "
                                  "no best)", choices=("auto", *RANKED_ERRORS, "none"))
    inception_weights: str = how_to_run("", "Inception-v3 .weights.h5 for FID and KID (without it they are "
                                        "skipped)")


def identity_fields():
    """The names of the fields a resumed run is checked against; every field declares its role."""
    return frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["role"] == IDENTITY)


PRESETS = {
    "reference": TrainConfig(),
    "tiny": TrainConfig(ngf=16, ndf=16, n_blocks=3, load_size=72, crop_size=64, batch_size=4,
                        n_epochs=10, n_epochs_decay=10),
}
