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
    install_requires=[
        "tensorflow==2.21.*",
        "keras==3.15.*",
        "apache-beam[gcp]==2.77.*",
        "tensorflow-datasets>=4.9",
        "tensorboard==2.21.*",
        "google-cloud-storage>=3",
        "pillow>=10",
        "numpy>=2",
        "tqdm>=4",
        "psutil>=5",
    ],
    extras_require={
        "dev": ["pytest", "pytest-timeout", "gcp-storage-emulator", "scipy", "jax"],  # jax: benchmarks/xla_step_jax.py
        "k8s": ["kubernetes", "kubernetes-validate", "pyyaml"],
    },
    entry_points={"console_scripts": ["cyclegan = cyclegan:main"]},
)
