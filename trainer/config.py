"""TrainConfig: one dataclass for a training run, and its named presets.

`reference` is exactly the paper's networks and hyperparameters at 256 px; `tiny` is small enough for CPU tests
and the demo. Every field is also a `cyclegan train` flag, applied on top of the chosen preset.
"""
import dataclasses

from preprocessing.jobs import config_field


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # networks
    input_nc: int = config_field(3, "image channels")
    ngf: int = config_field(64, "generator base width")
    ndf: int = config_field(64, "discriminator base width")
    n_blocks: int = config_field(9, "residual blocks in each generator (the reference: 9 at 256 px, 6 at 128 px)")
    n_layers_d: int = config_field(3, "PatchGAN stride layers (3: 70x70 patches)")
    norm: str = config_field("instance", "normalisation layers", choices=("instance", "none"))
    upsample: str = config_field("transpose", "generator upsampling: stride-2 transposed conv (reference) or "
                                 "nearest resize + conv (no checkerboard artifacts)",
                                 choices=("transpose", "resize_conv"))
    # losses
    gan_mode: str = config_field("lsgan", "adversarial loss", choices=("lsgan", "vanilla"))
    lambda_a: float = config_field(10.0, "weight of the cycle loss A -> B -> A")
    lambda_b: float = config_field(10.0, "weight of the cycle loss B -> A -> B")
    lambda_identity: float = config_field(0.5, "identity loss weight, times lambda; 0 skips the identity passes")
    pool_size: int = config_field(50, "image pool per direction for the discriminators; 0 disables it")
    # optimisation
    lr: float = config_field(2e-4, "Adam learning rate")
    beta1: float = config_field(0.5, "Adam beta1")
    beta2: float = config_field(0.999, "Adam beta2")
    adam_epsilon: float = config_field(1e-8, "Adam epsilon (the reference's PyTorch default; Keras's is 1e-7)")
    n_epochs: int = config_field(100, "epochs at the initial learning rate")
    n_epochs_decay: int = config_field(100, "epochs of linear decay after those")
    # data
    load_size: int = config_field(286, "images are resized to this square size before cropping")
    crop_size: int = config_field(256, "random crop size used for training (a multiple of 4)")
    batch_size: int = config_field(1, "images per domain per replica in a step")
    seed: int = config_field(0, "random seed of weights, data order, augmentation and the image pools")
    # the run
    data: str = config_field("", "the --output folder of `cyclegan preprocess` (local or gs://)")
    model_dir: str = config_field("", "where the trained weights go (local, gs:// or ram://)")
    steps: int = config_field(0, "train this many steps; 0: --epochs, or n_epochs + n_epochs_decay")
    epochs: int = config_field(0, "train this many epochs; 0: n_epochs + n_epochs_decay")
    strategy: str = config_field("auto", "auto: several workers in TF_CONFIG -> multi_worker, else mirrored over "
                                 "all GPUs, else mirrored over the CPU",
                                 choices=("auto", "multi_worker", "mirrored", "one_device"))
    cpu_replicas: int = config_field(1, "without GPUs, split the CPU into this many replicas")
    peer_timeout: int = config_field(300, "several workers: seconds without an answer from a peer worker before "
                                     "the others give up and exit with 75, so the whole group can restart")
    precision: str = config_field("float32", "compute precision",
                                  choices=("float32", "mixed_float16", "mixed_bfloat16"))
    xla: str = config_field("auto", "compile each replica's losses and gradients with XLA (auto: on GPUs)",
                            choices=("auto", "on", "off"))
    xla_cache: bool = config_field(True, "keep XLA's compiled functions in --model_dir/xla_cache, so that a "
                                   "restarted run loads them instead of compiling again")
    log_every: int = config_field(10, "print progress and write scalar summaries every this many steps")
    checkpoint_every: int = config_field(500, "save a full-state checkpoint every this many steps (and at the end)")
    keep_checkpoints: int = config_field(3, "keep this many of the latest checkpoints")
    force_resume: bool = config_field(False, "resume even when the model directory's run used another config or "
                                      "dataset")
    image_every: int = config_field(500, "write translated held-out images to TensorBoard every this many steps")
    summary_images: int = config_field(4, "held-out images per domain in those summaries")
    profile_start: int = config_field(0, "trace the steps from this one with the TensorFlow profiler (0: off)")
    profile_steps: int = config_field(5, "how many steps the profiler traces")
    eval_every: int = config_field(0, "evaluate on --eval_data every this many steps and at the end (0: never)")
    eval_data: str = config_field("", "a raw dataset root with testA/ testB/ (and testA_truth/, as `cyclegan "
                                  "synth` writes) for that evaluation")
    eval_images: int = config_field(0, "evaluate on at most this many test images per domain (0: all)")
    inception_weights: str = config_field("", "Inception-v3 .weights.h5 for FID and KID (without it they are "
                                          "skipped)")


# Fields that say how to run, not what to train: a resumed run may change them freely.
RUN_FIELDS = frozenset({"data", "model_dir", "steps", "epochs", "strategy", "cpu_replicas", "peer_timeout", "xla",
                        "xla_cache", "log_every", "checkpoint_every", "keep_checkpoints", "force_resume", "image_every",
                        "summary_images", "profile_start", "profile_steps", "eval_every", "eval_data", "eval_images",
                        "inception_weights"})


PRESETS = {
    "reference": TrainConfig(),
    "tiny": TrainConfig(ngf=16, ndf=16, n_blocks=3, load_size=72, crop_size=64, batch_size=4,
                        n_epochs=10, n_epochs_decay=10),
}
