"""A tiny run of each training benchmark, so that they keep working: no timing is asserted, only what they count."""
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


def run_benchmark(tmp_path, name, *flags):
    """benchmarks/NAME with these flags, run as `python -m benchmarks.NAME` -> (its JSON rows, what it printed); the
    JSON names this machine."""
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name.removesuffix('.py')}", *flags, "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["machine"]["cores"] == os.cpu_count()
    return result["rows"], done.stdout


@pytest.mark.slow
def test_step_benchmark_runs_and_its_flop_counts_agree(tmp_path):
    rows, stdout = run_benchmark(tmp_path, "step_bench.py", "--presets", "tiny", "--precisions", "float32", "--xla",
                                 "on", "--batches", "1", "--replicas", "1", "2", "--steps", "1", "--repeat", "1")
    assert len(rows) == 2
    for row in rows:
        assert row["ours_pairs_s"] > 0 and row["keras_io_pairs_s"] > 0
        # the compiled functions do the analytic work, no pass twice (the reference nets: 1877.7 vs 1884.6 GFLOP)
        assert 0.95 < row["gflop_pair_compiled"] / row["gflop_pair_analytic"] < 1.05
    assert "ours/keras.io" in stdout


def test_flop_count_of_the_reference_nets_is_the_papers_arithmetic():
    """18 forward generator passes and 16 discriminator ones per pair: about 1.885 TFLOP at 256 px."""
    from benchmarks import flops
    from trainer.config import PRESETS
    from trainer.model import networks

    counts = flops.analytic_pair_flops(networks.build(PRESETS["reference"]), PRESETS["reference"])
    assert round(counts["F_G"] / 1e9, 1) == 99.1 and round(counts["F_D"] / 1e9, 2) == 6.29
    assert round(counts["per_pair"] / 1e12, 3) == 1.885


@pytest.mark.slow
def test_jax_step_benchmark_steps_the_trainers_nets_under_xla(tmp_path):
    rows, stdout = run_benchmark(tmp_path, "xla_step_jax.py", "--preset", "tiny", "--batches", "1", "--steps", "1",
                                 "--repeat", "1", "--profile_steps", "1", "--matmul_size", "256")
    assert [(row["precision"], row["batch"]) for row in rows] == [("float32", 1), ("mixed_bfloat16", 1)]
    for row in rows:
        assert row["pairs_s"] > 0 and row["tflop_s"] > 0 and row["of_matmul_rate"] > 0
        # XLA counts the whole step: the analytic conv passes, none twice, and a little elementwise work beside them
        assert 0.95 < row["gflop_pair_xla"] / row["gflop_pair_analytic"] < 1.3
    assert "image pool left out" in stdout and "the ten most expensive ops" in stdout


@pytest.mark.slow
def test_input_benchmark_runs(tmp_path):
    rows, stdout = run_benchmark(tmp_path, "input_bench.py", "--images", "6", "--pairs", "8", "--size", "300")
    assert [row["threads"] for row in rows] == ["1 thread", f"all {os.cpu_count()} cores"]
    assert all(row["pairs_s"] > 0 for row in rows) and "pairs/s per core" in stdout


@pytest.mark.slow
def test_trainer_benchmark_runs(tmp_path):
    (tiny, reference), _ = run_benchmark(tmp_path, "trainer_bench.py", "--steps", "12", "--bare_steps", "2",
                                         "--memory_steps", "1", "--images", "8")
    assert tiny["trainer_pairs_s"] > 0 and tiny["bare_pairs_s"] > 0 and tiny["peak_mb"] > 100
    assert reference["preset"] == "reference" and reference["peak_mb"] > tiny["peak_mb"]


def test_trainer_benchmark_refuses_a_run_too_short_to_time():
    done = subprocess.run([sys.executable, "-m", "benchmarks.trainer_bench", "--steps", "5"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--steps 5: the end-to-end run needs more than 10 steps" in done.stderr


@pytest.mark.slow
def test_overhead_benchmark_splits_the_step(tmp_path):
    rows, stdout = run_benchmark(tmp_path, "overhead_bench.py", "--replicas", "1", "2", "--steps", "2",
                                 "--repeat", "1")
    assert [row["replicas"] for row in rows] == [1, 2]
    for row in rows:
        # the parts of the time outside the compiled functions add up to it, and the step holds both
        parts = row["updates_ms"] + row["pools_ms"] + row["loss_fetch_ms"] + row["rest_ms"]
        assert abs(parts - row["outside_ms"]) < 1e-6
        assert abs(row["compiled_ms"] + row["outside_ms"] - row["step_ms"]) < 1e-6 and row["step_ms"] > 0
    assert "outside ms" in stdout
    added = float(stdout.split("outside ms per added replica")[1].split()[2])  # the row: XLA, replicas, figure
    assert abs(added - (rows[1]["outside_ms"] - rows[0]["outside_ms"])) < 0.006


@pytest.mark.slow
def test_startup_benchmark_times_every_phase(tmp_path):
    rows, _ = run_benchmark(tmp_path, "startup_bench.py", "--presets", "tiny", "--xla", "off", "--images", "4")
    (row,) = rows
    phases = ("import", "input", "nets", "trace", "first_step")
    assert all(row[name] > 0 for name in phases) and row["later_step"] > 0
    # the phases are consecutive stretches of one process, so they fit in the parent's wall time for it
    assert abs(row["to_first_step"] - sum(row[name] for name in phases)) < 1e-6 and row["to_first_step"] < row["wall"]


@pytest.mark.slow
def test_preprocess_benchmark_sets_the_fixed_cost_apart_and_samples_memory(tmp_path):
    rows, stdout = run_benchmark(tmp_path, "preprocess_bench.py", "--images", "8", "--width", "320", "--height",
                                 "240", "--memory_images", "4", "12")
    (row,) = rows
    cores = os.cpu_count()
    assert row["fixed_cost_s"] > 0 and f"Beam, {cores} worker(s)" in row["seconds"]
    assert [entry["images"] for entry in row["memory"]] == [4, 12]
    # the runner and its worker processes each import Beam: tens of MB at least
    assert all(entry["runner_mb"] > 50 and entry["worker_mb"] > 50 for entry in row["memory"])
    assert "Per-image efficiency" in stdout


@pytest.mark.slow
def test_save_benchmark_times_the_trainers_save_and_an_upload(tmp_path):
    (row,), printed = run_benchmark(tmp_path, "save_bench.py", "--presets", "tiny", "--repeats", "1")
    assert row["preset"] == "tiny" and 1 < row["mb"] < 100  # the tiny nets, both Adam states and the pools
    assert all(row[target] > 0 for target in ("local", "ram", "emulator")) and "upload to emulator s" in printed


@pytest.mark.slow
def test_op_profile_sums_the_steps_ops_by_type_at_each_batch(tmp_path):
    rows, stdout = run_benchmark(tmp_path, "op_profile.py", "--blocks", "0", "--batches", "1", "2", "--steps", "1",
                                 "--repeat", "1", "--variants", "keras layers", "xla norm")
    by_op = {(row["variant"], row["op"]): row for row in rows}
    # the convolutions' kernels lead the table; Keras's layers bring their own ops, ours do not have them
    assert any("Conv2DBackpropFilter" in op for _, op in by_op) and all(
        row["ms_b1"] > 0 and row["ms_b2"] > 0 and row["growth"] > 0 for row in rows if row["growth"] is not None)
    assert ("keras layers", "StridedSliceGrad") in by_op and ("ours", "StridedSliceGrad") not in by_op
    # XLA runs the norm's passes in its own kernels, outside TensorFlow's op table
    assert ("ours", "SquaredDifference") in by_op and ("xla norm", "SquaredDifference") not in by_op
    assert "not cheaper per pair at a larger batch" in stdout and "ours / keras layers" in stdout


@pytest.mark.parametrize("job", ["translate", "train"])
def test_memory_benchmark_measures_each_size_in_a_process_of_its_own(tmp_path, job):
    remat = ["--remat", "off", "on"] if job == "train" else []
    rows, stdout = run_benchmark(tmp_path, "memory_bench.py", job, "--ngf", "4", "--n_blocks", "1", "--sides", "64",
                                 "128", *remat)
    expected = [(64, "off"), (64, "on"), (128, "off"), (128, "on")] if remat else [(64, "off"), (128, "off")]
    assert [(row["side"], row["remat"]) for row in rows] == expected and "GB per megapixel" in stdout
    for row in rows:
        # a process with TensorFlow loaded, before and after the work, which took some time
        assert 0.1 < row["ready_gb"] <= row["peak_gb"] and row["seconds"] > 0


@pytest.mark.slow
def test_health_benchmark_times_the_step_with_and_without_its_signals(tmp_path):
    rows, stdout = run_benchmark(tmp_path, "health_bench.py", "--xla", "off", "--batches", "2", "--replicas", "1",
                                 "--steps", "1", "--repeat", "1")
    assert len(rows) == 1 and rows[0]["with_ms"] > 0 and rows[0]["without_ms"] > 0
    assert "without ms/step" in stdout
