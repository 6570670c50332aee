"""`cyclegan import`: the reference's PyTorch generator weights in our generator, exactly; and `train --init_from`.

The mapping is checked twice: against PyTorch itself (a generator written from the paper's architecture in
tests/torch_reference.py, random weights, saved with torch.save), and, where PyTorch is not installed, against a
committed file and the outputs PyTorch computed from it (tests/make_pth_fixture.py).
"""
import io
import os
import pickle
import subprocess
import zipfile

import numpy as np
import pytest

from tests import make_pth_fixture as fixture
from tests.helpers import BIN
from tests.training import train_command

try:
    import torch
except ImportError:  # the [torch] extra: `make install` adds it (a CPU build of about 190 MB)
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install "
                                 "'cyclegan-pipeline[torch]'): the committed fixture still checks the mapping")


def cyclegan(*args):
    return subprocess.run([os.path.join(BIN, "cyclegan"), *args], capture_output=True, text=True, timeout=600)


def imported_generators(model_dir):
    from trainer.run.trained import load_run

    _, nets, _, _ = load_run(model_dir, say=lambda _: None)
    return nets


def test_the_committed_reference_file_translates_as_pytorch_did(tmp_path):
    """An older-format file with the running statistics pre-0.4 norms carried: dropped, and said."""
    model_dir = str(tmp_path / "imported")
    done = cyclegan("import", "--a2b", fixture.WEIGHTS, "--model_dir", model_dir, "--preset", "tiny",
                    "--ngf", str(fixture.NGF), "--n_blocks", str(fixture.N_BLOCKS))
    assert done.returncode == 0, done.stderr
    assert "dropped 18 stale running-statistics keys" in done.stdout
    assert "random (seed 0, not imported): G_BA, D_A, D_B" in done.stdout
    generator = imported_generators(model_dir)["G_AB"]
    for height, width in fixture.SIZES:
        expected = np.load(fixture.outputs_path(height, width))
        ours = generator(fixture.inputs(height, width), training=False).numpy()
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)


@needs_torch
def test_pytorch_generators_of_both_directions_import_exactly(tmp_path):
    from tests.torch_reference import random_generator, translate

    files, torch_nets = {}, {}
    for flag, seed in (("--a2b", 1), ("--b2a", 2)):
        torch_nets[flag] = random_generator(8, 3, seed)
        files[flag] = str(tmp_path / f"latest_net_G_{flag[2:]}.pth")
        torch.save(torch_nets[flag].state_dict(), files[flag])
    model_dir = str(tmp_path / "imported")
    done = cyclegan("import", "--a2b", files["--a2b"], "--b2a", files["--b2a"], "--model_dir", model_dir,
                    "--preset", "tiny", "--ngf", "8", "--n_blocks", "3")
    assert done.returncode == 0, done.stderr
    assert "random (seed 0, not imported): D_A, D_B" in done.stdout
    nets = imported_generators(model_dir)
    for flag, name in (("--a2b", "G_AB"), ("--b2a", "G_BA")):
        for height, width in ((64, 64), (68, 92)):
            x = fixture.inputs(height, width)
            np.testing.assert_allclose(nets[name](x, training=False).numpy(), translate(torch_nets[flag], x),
                                       atol=1e-5, rtol=0)


@needs_torch
def test_the_reference_generator_has_our_parameter_count():
    from tests.torch_reference import Generator

    assert sum(p.numel() for p in Generator().parameters()) == 11_378_179


def test_a_file_of_another_architecture_or_unsafe_content_is_refused_in_clear_lines(tmp_path):
    def refused(path, *flags):
        done = cyclegan("import", "--a2b", str(path), "--model_dir", str(tmp_path / "out"), "--preset", "tiny", *flags)
        assert done.returncode == 2, done.stdout + done.stderr
        assert not os.path.exists(tmp_path / "out" / "checkpoints")
        return done.stderr

    wrong_size = refused(fixture.WEIGHTS)  # the tiny preset's ngf 16, 3 blocks; the file's ngf 4, 2 blocks
    assert "(it holds a generator of --ngf 4 --n_blocks 2)" in wrong_size
    assert "  model.1.weight: shape (4, 3, 7, 7), this generator's is (16, 3, 7, 7)" in wrong_size
    assert "  missing key model.12.conv_block.1.weight (shape (64, 64, 3, 3))" in wrong_size

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    unsafe = tmp_path / "unsafe.pth"
    with zipfile.ZipFile(unsafe, "w") as archive:  # the layout torch.save writes, with a pickle that runs a command
        archive.writestr("archive/data.pkl", pickle.dumps({"model.1.weight": RunsCode()}, protocol=2))
    assert "refused: it names the Python object posix.system" in refused(unsafe, "--ngf", "4", "--n_blocks", "2")
    assert not os.path.exists(tmp_path / "ran")

    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    assert f"--a2b {text}: not a PyTorch state dict" in refused(text)
    assert "no such file" in refused(tmp_path / "missing.pth").lower() or "cannot be read" in refused(
        tmp_path / "missing.pth")


def test_the_reader_reads_both_layouts_without_pytorch():
    from trainer.model import pth

    state = pth.load(open(fixture.WEIGHTS, "rb").read())
    assert state["model.1.weight"].shape == (fixture.NGF, 3, 7, 7) and state["model.1.weight"].dtype == np.float32
    assert len(state) == 38


@needs_torch
def test_the_reader_matches_torch_load_on_the_zip_layout_and_strided_tensors():
    from trainer.model import pth

    values = {"w": torch.randn(4, 3, 2, 2), "t": torch.randn(5, 6).t(), "h": torch.randn(3).half()}
    buffer = io.BytesIO()
    torch.save(values, buffer)
    read = pth.load(buffer.getvalue())
    for key, value in values.items():
        np.testing.assert_array_equal(read[key], value.numpy())


def test_training_from_an_import_starts_from_its_weights_with_fresh_state(tiny_records, tmp_path):
    """--lr 0: the imported generator must come out of a step unchanged, at step 1 of a new run."""
    records, raw = tiny_records
    imported = str(tmp_path / "imported")
    assert cyclegan("import", "--a2b", fixture.WEIGHTS, "--model_dir", imported, "--preset", "tiny", "--ngf", "4",
                    "--ndf", "4", "--n_blocks", "2").returncode == 0  # the networks of train_command's run
    evaluated = cyclegan("evaluate", "--model_dir", imported, "--data", raw, "--output", str(tmp_path / "eval"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "evaluate: warning: G_BA holds random weights (`cyclegan import` gave it none)" in evaluated.stdout
    tuned = str(tmp_path / "tuned")
    command = train_command(records, tuned, 1, "--n_blocks", "2", "--lr", "0", "--init_from", imported)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"initialised G_AB from {imported}/checkpoints/ckpt-0 (weights only" in done.stdout
    assert "initialised G_BA, D_A, D_B at random" in done.stdout
    before, after = imported_generators(imported), imported_generators(tuned)
    for a, b in zip(before["G_AB"].get_weights(), after["G_AB"].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert os.path.exists(os.path.join(tuned, "checkpoints", "ckpt-1.index"))

    other = subprocess.run(train_command(records, str(tmp_path / "other"), 1, "--init_from", imported),
                           capture_output=True, text=True, timeout=600)  # --n_blocks 1: another generator
    assert other.returncode == 2
    assert f"--init_from {imported}: its networks are not this run's (n_blocks 2 there, 1 here)" in other.stderr
