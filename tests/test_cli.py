"""The command line and the package, as a user meets them: real subprocesses, an installed copy."""
import os
import subprocess
import sys

from tests.conftest import BIN, REPO


def run(*cmd, cwd=REPO, env=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_cyclegan_help_lists_the_subcommands():
    result = run(os.path.join(BIN, "cyclegan"), "--help")
    assert result.returncode == 0
    for subcommand in ("synth", "preprocess", "train"):
        assert f"  {subcommand} " in result.stdout
    bad = run(os.path.join(BIN, "cyclegan"), "nonsense")
    assert bad.returncode == 2 and "invalid choice: 'nonsense'" in bad.stderr


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
    target = tmp_path / "site"
    install = run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                  "--target", str(target), REPO)
    assert install.returncode == 0, install.stderr
    code = ("import cyclegan, preprocessing, pipeline, trainer, k8s; "
            "print(*(m.__file__ for m in (cyclegan, preprocessing, pipeline, trainer, k8s)))")
    result = run(sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}",
                 cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert all(path.startswith(str(target)) for path in result.stdout.split())
