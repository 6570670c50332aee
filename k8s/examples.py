"""The golden examples in k8s/examples/: what `cyclegan submit ... --dry-run` renders for typical runs.

    python -m k8s.examples     # rewrite them after changing the renderer; a test fails while they differ
"""
import os

import yaml

from k8s.cli import parse_submit
from k8s.render import render

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples")
IMAGE = "europe-docker.pkg.dev/my-project/cyclegan/trainer:0.1.0"
BEAM_IMAGE = "europe-docker.pkg.dev/my-project/cyclegan/beam:0.1.0"
TRAIN = ["--image", IMAGE, "--data", "gs://my-bucket/records/horse2zebra", "--model_dir", "gs://my-bucket/runs/h2z"]
PREPROCESS = ["--image", BEAM_IMAGE, "--name", "h2z-records", "--input", "gs://my-bucket/raw/horse2zebra",
              "--output", "gs://my-bucket/records/horse2zebra"]

EXAMPLES = {
    "train-1-gpu.yaml": ["train", *TRAIN, "--name", "h2z"],
    "train-8-gpus-spot.yaml": ["train", *TRAIN, "--name", "h2z", "--gpus", "8", "--spot", "--", "--batch_size",
                               "4", "--precision", "mixed_bfloat16", "--checkpoint_minutes", "10"],
    "train-4-nodes.yaml": ["train", *TRAIN, "--name", "h2z", "--gpus", "8", "--nodes", "4", "--queue", "research",
                           "--priority_class", "training", "--gcp_service_account",
                           "cyclegan@my-project.iam.gserviceaccount.com"],
    "train-4-nodes-jobset.yaml": ["train", *TRAIN, "--name", "h2z", "--gpus", "8", "--nodes", "4", "--backend",
                                  "jobset"],
    "train-4-nodes-jobset-v0.10.yaml": ["train", *TRAIN, "--name", "h2z", "--gpus", "8", "--nodes", "4", "--backend",
                                        "jobset", "--jobset_version", "0.10"],
    "train-2-nodes-tcpx.yaml": ["train", *TRAIN, "--name", "h2z", "--gpus", "8", "--nodes", "2", "--network_profile",
                                "tcpx"],
    "train-2-nodes-tcpxo.yaml": ["train", *TRAIN, "--name", "h2z", "--gpus", "8", "--nodes", "2",
                                 "--accelerator", "nvidia-h100-mega-80gb", "--network_profile", "tcpxo"],
    "preprocess.yaml": ["preprocess", *PREPROCESS],
    "preprocess-dataflow.yaml": ["preprocess", *PREPROCESS, "--runner", "dataflow", "--project", "my-project",
                                 "--region", "europe-west4", "--temp_location", "gs://my-bucket/tmp"],
    "tensorboard.yaml": ["tensorboard", "--image", IMAGE, "--name", "h2z-tensorboard", "--logdir",
                         "gs://my-bucket/runs/h2z/logs"],
    "serve.yaml": ["serve", "--name", "h2z-serve", "--model", "gs://my-bucket/export/h2z/a2b", "--replicas", "2"],
    "serve-kserve-gpu.yaml": ["serve", "--name", "h2z-serve", "--model", "gs://my-bucket/export/h2z/a2b", "--kserve",
                              "--gpus", "1", "--accelerator", "nvidia-l4"],
}


def rendered(argv):
    config, extra, _ = parse_submit(argv[0], argv[1:])
    return render(config, extra)[1]


def main():
    os.makedirs(FOLDER, exist_ok=True)
    for filename, argv in EXAMPLES.items():
        with open(os.path.join(FOLDER, filename), "w") as f:
            f.write(f"# cyclegan submit {' '.join(argv)} --dry-run\n")
            yaml.safe_dump_all(rendered(argv), f, sort_keys=False)
        print(f"wrote k8s/examples/{filename}")


if __name__ == "__main__":
    main()
