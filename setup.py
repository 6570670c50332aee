"""CycleGAN pipeline: Beam preprocessing, distributed TensorFlow training, Kubernetes jobs.

Also the `--setup_file` that Dataflow workers install, so it must stay importable without extras.
"""
from setuptools import find_packages, setup

setup(
    name="cyclegan-pipeline",
    version="0.1.0",
    description="Unpaired image-to-image translation at scale: Beam preprocessing, distributed CycleGAN training",
    python_requires=">=3.10",
    packages=find_packages(include=["preprocessing*", "pipeline*", "trainer*", "k8s*"]),
    py_modules=["cyclegan"],
    # What every role needs, and what a Dataflow worker installs from --setup_file (its SDK brings Beam).
    install_requires=[
        "tensorflow==2.21.*",
        "keras==3.15.*",
        "tensorflow-datasets>=4.9",
        "google-cloud-storage>=3",
        "pillow>=10",
        "numpy>=2",
        "psutil>=5",
    ],
    # One extra per role, so that each image holds what its role runs (k8s/Dockerfile, k8s/Dockerfile.beam).
    extras_require={
        "train": ["tensorboard==2.21.*", "tqdm>=4"],  # train, export, translate, evaluate, TensorBoard
        "preprocess": ["apache-beam[gcp]==2.77.*"],  # preprocess, synth's job, the Dataflow launcher
        "k8s": ["kubernetes", "kubernetes-validate", "pyyaml"],  # submit
        "onnx": ["tf2onnx>=1.17", "onnx", "onnxruntime"],  # export --format onnx, and running its files
        "litert": ["ai-edge-litert"],  # running export --format litert's files (TensorFlow converts them)
        "torch": ["torch"],  # tests only: `cyclegan import` checked against PyTorch itself (it reads .pth without)
        "dev": ["pytest", "pytest-timeout", "gcp-storage-emulator", "scipy", "jax"],  # jax: benchmarks/xla_step_jax.py
    },
    entry_points={"console_scripts": ["cyclegan = cyclegan:main"]},
)
