import os

import pytest

from preprocessing.process import prepare_libraries
from tests import gcs_emulator as gcs
from tests.helpers import gradient, save_image, write_messy_domain

prepare_libraries()

# Two logical CPU devices for the MirroredStrategy tests: possible only before TensorFlow initialises them.
from trainer.run.strategy import split_cpu  # noqa: E402

split_cpu(2)

@pytest.fixture(scope="session")
def messy_root(tmp_path_factory):
    """trainA/ with every kind of file, trainB/ and testA/ with a few plain images, testB/ missing."""
    root = tmp_path_factory.mktemp("messy")
    expect = write_messy_domain(str(root / "trainA"))
    for split_domain, n in (("trainB", 5), ("testA", 3)):
        for i in range(n):
            path = str(root / split_domain / f"img{i}.png")
            save_image(path, gradient(48 + i, 40, 100 + i + len(split_domain)))
            expect[path] = ("written", "")
    return str(root), expect


@pytest.fixture(scope="session")
def gcs_emulator():
    """A real GCS JSON-API emulator on a loopback port, for google-cloud-storage and Beam's GCS IO."""
    saved = {key: os.environ.get(key) for key in gcs.ENV}
    proc = gcs.start()
    yield os.environ["STORAGE_EMULATOR_HOST"]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory):
    """A small synthetic dataset, preprocessed by the real job: (records folder, raw folder)."""
    from pipeline import cli, synth

    base = tmp_path_factory.mktemp("tiny")
    raw, out = str(base / "raw"), str(base / "records")
    synth.write(raw, synth.SynthConfig(train=12, test=4, size=64))
    assert cli.main(["--input", raw, "--output", out, "--min_train_shards", "4"]) == 0
    return out, raw


@pytest.fixture(scope="session")
def built_images():
    """{role: image name} of both container images, built once with podman (tests/containers.py), or why they
    cannot be built here (a str)."""
    from tests import containers

    reason = containers.missing()
    if reason:
        return reason
    names, output = containers.build()
    print(output)  # each image's size and build time
    return names


@pytest.fixture(scope="session")
def images(built_images):
    """Both container images; skips where podman cannot run."""
    if isinstance(built_images, str):
        pytest.skip(built_images)
    return built_images


@pytest.fixture(scope="session")
def two_cpus():
    """The trainer's strategy over the two logical CPUs, one for the whole session."""
    from trainer.run.strategy import mirrored

    return mirrored(["CPU:0", "CPU:1"])
