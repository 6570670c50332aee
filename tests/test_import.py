"""`cyclegan import`: the reference's PyTorch generator weights in our generator, exactly; and `train --init_from`.

The mapping is checked twice: against PyTorch itself (a generator written from the paper's architecture in
tests/torch_reference.py, random weights, saved with torch.save), and, where PyTorch is not installed, against a
committed file and the outputs PyTorch computed from it (tests/make_pth_fixture.py).
"""
import io
import json
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
    exported = str(tmp_path / "export")  # import -> export (a2b only) -> evaluate the export
    assert cyclegan("export", "--model_dir", imported, "--output", exported).returncode == 0
    one_way = cyclegan("evaluate", "--model", exported, "--data", raw, "--output", str(tmp_path / "eval-export"))
    assert one_way.returncode == 0, one_way.stderr
    assert f"{exported} holds a2b only" in one_way.stdout
    report = json.loads((tmp_path / "eval-export" / "report.json").read_text())
    assert report["ground_truth_mae"] > 0 and report["cycle_mae"] is None
    assert os.listdir(tmp_path / "eval-export" / "a2b") and not (tmp_path / "eval-export" / "b2a").exists()
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

    damaged = tmp_path / "damaged"  # a copy whose checkpoint index is garbage: named in --init_from's words
    import shutil

    shutil.copytree(imported, damaged)
    (damaged / "checkpoints" / "ckpt-0.index").write_bytes(b"not an index")
    broken = subprocess.run(train_command(records, str(tmp_path / "again"), 1, "--n_blocks", "2", "--init_from",
                                          str(damaged)), capture_output=True, text=True, timeout=600)
    assert broken.returncode == 2, broken.stderr
    (line,) = [line for line in broken.stderr.splitlines() if "error" in line]
    assert f"--init_from {damaged}: none of its checkpoints loads" in line and "--force_resume" not in line
    assert "its index file is damaged or not a checkpoint's" in line and "give --init_from another run" in line


FLOATS4 = np.arange(4, dtype="<f4").tobytes()
LYING_VIEWS = {  # what each crafted tensor claims -> the refusal
    "stride far past the storage": (dict(numel=4, offset=0, size=[64], stride=[1 << 28]), "reaches element"),
    "a kernel over four floats": (dict(numel=4, offset=0, size=[16, 3, 7, 7], stride=[147, 49, 7, 1]),
                                  "reaches element"),
    "offset past the end": (dict(numel=4, offset=4, size=[1], stride=[1]), "reaches element"),
    "negative stride": (dict(numel=4, offset=3, size=[4], stride=[-1]), "zero and negative strides"),
    "stride 0 repeating one float": (dict(numel=4, offset=0, size=[750_000_000], stride=[0]),
                                     "zero and negative strides"),
    "a storage the record does not hold": (dict(numel=750_000_000, offset=0, size=[750_000_000], stride=[1]),
                                           "claims 750000000 elements"),
}


@pytest.mark.parametrize("case", LYING_VIEWS)
def test_the_reader_refuses_views_and_sizes_its_bytes_do_not_back(case, tmp_path):
    from tests import crafted_pth
    from trainer.model import pth

    claims, refusal = LYING_VIEWS[case]
    for layout in ("zip", "legacy"):
        path = tmp_path / f"{layout}.pth"
        tensors = {"model.1.weight": crafted_pth.tensor("0", **claims)}
        if layout == "zip":
            crafted_pth.zip_file(path, tensors, {"0": FLOATS4})
        else:
            crafted_pth.legacy_file(path, tensors, {"0": (claims["numel"], FLOATS4)})
        with pytest.raises(ValueError, match=refusal):
            pth.load(str(path))


def test_bfloat16_weights_are_read_exactly_as_float32(tmp_path):
    from tests import crafted_pth
    from trainer.model import pth

    values = np.array([1.0, -2.5, 3.140625, 0.0], "<f4")
    bf16 = (values.view("<u4") >> 16).astype("<u2").tobytes()  # these four are exact in bfloat16
    crafted_pth.zip_file(tmp_path / "b.pth", {"w": crafted_pth.tensor("0", 4, 0, [2, 2], [2, 1], "BFloat16Storage")},
                         {"0": bf16})
    read = pth.load(str(tmp_path / "b.pth"))["w"]
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, values.reshape(2, 2))


def _peak_rss_mib_of(*args):
    """Runs `cyclegan ARGS` in a fresh parent and returns (result, the child's own peak RSS in MiB)."""
    import sys

    probe = ("import json, resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, "
             "text=True); print(json.dumps([done.returncode, done.stderr, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    out = subprocess.run([sys.executable, "-c", probe, os.path.join(BIN, "cyclegan"), *args], capture_output=True,
                         text=True, timeout=600)
    import json

    code, stderr, peak_kib = json.loads(out.stdout)
    return code, stderr, peak_kib / 1024


def test_files_whose_sizes_lie_are_refused_in_one_line_before_they_cost_memory(tmp_path):
    from tests import crafted_pth

    zero_mib = bytes(1 << 20)
    lying = {
        "stride0.pth": lambda p: crafted_pth.zip_file(p, {"model.1.weight": crafted_pth.tensor(
            "0", 4, 0, [750_000_000], [0])}, {"0": FLOATS4}),
        "deflated.pth": lambda p: crafted_pth.zip_file(p, {"model.1.weight": crafted_pth.tensor(
            "0", 4, 0, [4], [1])}, {"0": (zero_mib, 1100)}, compress=True),  # 1.1 GB of zeros in 5 MB
        "legacy.pth": lambda p: crafted_pth.legacy_file(p, {"model.1.weight": crafted_pth.tensor(
            "0", 900_000_000, 0, [900_000_000], [1])}, {"0": (900_000_000, FLOATS4)}),
    }
    for name, make in lying.items():
        path = tmp_path / name
        make(path)
        assert os.path.getsize(path) < 8 << 20
        code, stderr, peak_mib = _peak_rss_mib_of("import", "--a2b", str(path), "--model_dir",
                                                  str(tmp_path / "out"), "--preset", "tiny")
        assert code == 2, stderr
        (line,) = [line for line in stderr.splitlines() if "--a2b" in line]
        assert "not a PyTorch state dict" in line and str(path) in line, stderr
        assert peak_mib < 1536, (name, peak_mib)
        assert not os.path.exists(tmp_path / "out" / "checkpoints")


def test_import_refuses_a_file_a_held_directory_and_one_that_holds_a_run_before_reading_weights(tmp_path):
    from tests.test_trainer_lease import held_by

    def refused(model_dir):
        done = cyclegan("import", "--a2b", str(tmp_path / "never-read.pth"), "--model_dir", str(model_dir),
                        "--preset", "tiny")
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "never-read.pth" not in done.stderr  # refused before the weights file is looked at
        return done.stderr

    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert f"--model_dir {a_file} is a file" in refused(a_file)
    training = tmp_path / "training"
    held_by(str(training))  # a trainer elsewhere holds it, its heartbeat fresh
    (training / "run.json").write_text("{}")
    assert f"--model_dir {training} is in use by another run (other-host pid 4242" in refused(training)
    assert (training / "run.json").read_text() == "{}"
    (training / "lease.json").unlink()
    assert f"--model_dir {training} already holds a run (run.json or checkpoints)" in refused(training)
    assert not (training / "lease.json").exists()  # let go after the refusal
