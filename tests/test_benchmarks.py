"""A tiny run of each training benchmark, so that they keep working: no timing is asserted, only what they count."""
import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_step_benchmark_runs_and_its_flop_counts_agree(tmp_path):
    out = tmp_path / "step.json"
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "step_bench.py"), "--presets", "tiny",
                           "--precisions", "float32", "--xla", "on", "--batches", "1", "--replicas", "1", "2",
                           "--steps", "1", "--repeat", "1", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["machine"]["cores"] == os.cpu_count() and len(result["rows"]) == 2
    for row in result["rows"]:
        assert row["ours_pairs_s"] > 0 and row["keras_io_pairs_s"] > 0
        # the compiled functions do the analytic work, no pass twice (the reference nets: 1877.7 vs 1884.6 GFLOP)
        assert 0.95 < row["gflop_pair_compiled"] / row["gflop_pair_analytic"] < 1.05
    assert "ours/keras.io" in done.stdout


def test_flop_count_of_the_reference_nets_is_the_papers_arithmetic():
    """18 forward generator passes and 16 discriminator ones per pair: about 1.885 TFLOP at 256 px."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        import flops
    finally:
        sys.path.pop(0)
    from trainer import networks
    from trainer.config import PRESETS

    counts = flops.analytic_pair_flops(networks.build(PRESETS["reference"]), PRESETS["reference"])
    assert round(counts["F_G"] / 1e9, 1) == 99.1 and round(counts["F_D"] / 1e9, 2) == 6.29
    assert round(counts["per_pair"] / 1e12, 3) == 1.885


def test_input_benchmark_runs(tmp_path):
    out = tmp_path / "input.json"
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "input_bench.py"), "--images", "6",
                           "--pairs", "8", "--size", "300", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["threads"] for row in rows] == ["1 thread", f"all {os.cpu_count()} cores"]
    assert all(row["pairs_s"] > 0 for row in rows) and "pairs/s per core" in done.stdout


def test_trainer_benchmark_runs(tmp_path):
    out = tmp_path / "trainer.json"
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "trainer_bench.py"), "--steps", "12",
                           "--bare_steps", "2", "--memory_steps", "1", "--images", "8", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    tiny, reference = json.loads(out.read_text())["rows"]
    assert tiny["trainer_pairs_s"] > 0 and tiny["bare_pairs_s"] > 0 and tiny["peak_mb"] > 100
    assert reference["preset"] == "reference" and reference["peak_mb"] > tiny["peak_mb"]
