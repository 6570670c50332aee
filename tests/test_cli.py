"""The command line and the package, as a user meets them: real subprocesses, an installed copy."""
import os
import shutil
import subprocess
import sys

import pytest

from preprocessing.commands import SUBCOMMANDS
from tests.helpers import BIN, REPO


def run(*cmd, cwd=REPO, env=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_cyclegan_help_lists_the_subcommands():
    result = run(os.path.join(BIN, "cyclegan"), "--help")
    assert result.returncode == 0
    for subcommand in SUBCOMMANDS:
        assert f"  {subcommand} " in result.stdout
        own = run(os.path.join(BIN, "cyclegan"), subcommand, "--help")
        assert own.returncode == 0 and f"usage: cyclegan {subcommand}" in own.stdout, own.stderr
    bad = run(os.path.join(BIN, "cyclegan"), "nonsense")
    assert bad.returncode == 2 and "invalid choice: 'nonsense'" in bad.stderr
    # no abbreviations: --out would have meant --output, and --model means --model_dir to nobody
    abbreviated = run(os.path.join(BIN, "cyclegan"), "export", "--model", "x", "--out", "y")
    assert abbreviated.returncode == 2 and "required: --model_dir, --output" in abbreviated.stderr


def test_module_entry_points_answer_help():
    for module, flag in (("pipeline", "--min_train_shards"), ("trainer", "--preset")):
        result = run(sys.executable, "-m", module, "--help")
        assert result.returncode == 0, result.stderr
        assert flag in result.stdout and f"python -m {module}" in result.stdout


def test_preprocess_runs_quietly_as_a_module(messy_root, tmp_path):
    root, _ = messy_root
    result = run(sys.executable, "-m", "pipeline", "--input", root, "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "trainA" in result.stdout and os.path.exists(tmp_path / "out" / "manifest.json")
    for chatter in ("absl::InitializeLog", "oneDNN", "cuda drivers", "semi_persistent_directory"):
        assert chatter not in result.stderr, result.stderr
    error = run(sys.executable, "-m", "pipeline", "--input", root, "--output", str(tmp_path / "out"))
    assert error.returncode == 2 and "--overwrite" in error.stderr and "Traceback" not in error.stderr


def test_installed_package_imports_outside_the_checkout(tmp_path):
    source, target = tmp_path / "source", tmp_path / "site"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "demo_out",
                                                                "__pycache__"))  # the build writes beside it
    install = run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                  "--target", str(target), str(source))
    assert install.returncode == 0, install.stderr
    code = ("import cyclegan, preprocessing, pipeline, trainer, k8s; "
            "print(*(m.__file__ for m in (cyclegan, preprocessing, pipeline, trainer, k8s)))")
    result = run(sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}",
                 cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert all(path.startswith(str(target)) for path in result.stdout.split())


@pytest.mark.slow
def test_train_dry_run_prints_config_counts_and_checks_data(tiny_records):
    records, _ = tiny_records
    result = run(os.path.join(BIN, "cyclegan"), "train", "--preset", "reference", "--dry_run", "--data", records)
    assert result.returncode == 0, result.stderr
    assert "[Network G_AB] Total number of parameters : 11,378,179" in result.stdout
    assert "[Network D_B] Total number of parameters : 2,764,737" in result.stdout
    assert '"crop_size": 256' in result.stdout and "data: trainA: 12 images in 4 shards" in result.stdout
    assert result.stderr == ""
    tiny = run(os.path.join(BIN, "cyclegan"), "train", "--preset", "tiny", "--ngf", "8", "--dry_run")
    assert '"ngf": 8' in tiny.stdout and '"crop_size": 64' in tiny.stdout and tiny.stderr == ""
    half = run(os.path.join(BIN, "cyclegan"), "train", "--preset", "tiny", "--precision", "mixed_float16",
               "--dry_run")  # no GPU here: the user hears that float16 is emulated on a CPU
    assert half.returncode == 0 and "--precision mixed_float16 on this CPU" in half.stderr, half.stderr


@pytest.mark.slow
def test_steps_past_the_learning_rate_schedule_are_said_at_start_and_in_the_dry_run(tiny_records):
    command = [os.path.join(BIN, "cyclegan"), "train", "--preset", "tiny", "--data", tiny_records[0], "--steps",
               "1000"]
    dry = run(*command, "--dry_run")
    assert dry.returncode == 0, dry.stderr
    # tiny: 12 images per domain, 4 a batch, 10 + 10 epochs of 3 steps
    assert ("warning: --steps 1000 runs past the learning-rate schedule, which reaches 0 at step 60 (--n_epochs 10 "
            "+ --n_epochs_decay 10 epochs of 3 steps): its last 940 steps train at learning rate 0") in dry.stdout
    assert "past the learning-rate schedule" not in run(*command[:-1], "60", "--dry_run").stdout


def test_train_flags_and_paths_fail_clearly(tmp_path):
    (tmp_path / "a_file").write_text("")
    for args, message in ((["--crop_size", "30"], "--crop_size 30: the generator needs a multiple of 4"),
                          (["--crop_size", "4", "--load_size", "8"], "--crop_size 4: the generator needs"),
                          (["--crop_size", "16"], "leave no output pixel below 24 px"),
                          (["--crop_size", "16", "--n_layers_d", "2"], None),  # a shallower discriminator fits
                          (["--model_dir", str(tmp_path / "a_file")], "is a file; give a folder"),
                          (["--load_size", "10", "--preset", "tiny"], "--load_size 10 is below --crop_size 64"),
                          (["--data", str(tmp_path)], "manifest.json not found"),
                          (["--batch_size", "0"], "--batch_size 0: must be at least 1"),
                          (["--norm", "batch"], "invalid choice: 'batch'"),
                          (["--ste", "5"], "unrecognized arguments: --ste 5")):  # no abbreviations
        result = run(os.path.join(BIN, "cyclegan"), "train", "--dry_run", *args)
        assert "Traceback" not in result.stderr
        if message is None:
            assert result.returncode == 0, (args, result.stderr)
        else:
            assert result.returncode == 2 and message in result.stderr, (args, result.stderr)


def test_translate_into_a_read_only_folder_is_a_one_line_usage_error(tmp_path):
    from tests.helpers import gradient, tmpfs

    (tmp_path / "photos").mkdir()
    gradient(32, 32).save(tmp_path / "photos" / "a.png")
    with tmpfs(tmp_path / "locked", "ro,size=1m") as locked:  # root writes anywhere else
        for output in (locked, locked / "new"):
            done = run(os.path.join(BIN, "cyclegan"), "translate", "--model", str(tmp_path / "any"), "--input",
                       str(tmp_path / "photos"), "--output", str(output))
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
            assert f"--output {output}: cannot write there" in done.stderr


def test_a_model_folder_this_user_may_not_read_is_named_as_unreadable(tmp_path):
    """Not "no SavedModel" or "no run.json": the files are there, the user may not list them."""
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root reads any folder; dropping that right needs util-linux's setpriv, not installed here")
    # root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH is held to a folder's mode bits like any user
    as_user = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
                "-dac_override,-dac_read_search"] if os.geteuid() == 0 else [])
    locked = tmp_path / "model"
    from tests.helpers import gradient

    (locked / "a2b").mkdir(parents=True)
    (tmp_path / "in").mkdir()
    gradient(16, 16).save(tmp_path / "in" / "a.png")
    (locked / "run.json").write_text("{}")
    locked.chmod(0)
    try:
        for flag, args in (("--model", ["translate", "--model", str(locked / "a2b"), "--input", str(tmp_path / "in"),
                                        "--output", str(tmp_path / "out")]),
                           ("--model_dir", ["export", "--model_dir", str(locked), "--output", str(tmp_path / "e")]),
                           ("--input", ["translate", "--model", str(tmp_path), "--input", str(tmp_path),
                                        "--output", str(tmp_path / "out")])):
            done = run(*as_user, os.path.join(BIN, "cyclegan"), *args)
            where = {"--model": str(locked / "a2b"), "--model_dir": str(locked), "--input": str(tmp_path)}[flag]
            assert done.returncode == 2, done.stderr
            (error,) = [line for line in done.stderr.splitlines() if line.strip()]
            assert "Permission denied" in error, error
            assert (f"{flag} {where}: cannot list 1 folder(s) in it ({locked}" if flag == "--input" else
                    f"{flag} {where}: cannot be read (") in error, error
    finally:
        locked.chmod(0o755)
