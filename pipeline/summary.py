"""What a finished preprocess run prints: a table of each split's counts, and its exit status."""
import sys

from apache_beam.io.filesystems import FileSystems

from preprocessing import exit_status
from preprocessing.schema import REJECTED_NAME


def print_summary(manifest, seconds, out=sys.stdout):
    print(f"{'split':<8}{'found':>8}{'written':>9}{'rejected':>10}{'dups':>7}{'skipped':>9}{'shards':>8}", file=out)
    total = 0
    for name, entry in manifest.splits.items():
        total += entry.found
        print(f"{name:<8}{entry.found:>8}{entry.written:>9}{sum(entry.rejected.values()):>10}"
              f"{entry.duplicates:>7}{sum(entry.skipped.values()):>9}{len(entry.shards):>8}", file=out)
    print(f"{total} files in {seconds:.1f}s ({total / max(seconds, 1e-9):.1f} files/s); "
          f"dataset fingerprint {manifest.fingerprint[:16]}", file=out)


def check_written(manifest, output):
    """Exit status 1 when no image at all was written; a warning for each split and domain without one."""
    rejected_list = FileSystems.join(output, REJECTED_NAME)
    if not any(entry.written for entry in manifest.splits.values()):
        print(f"preprocess: error: not one image was written: every file found was rejected, a duplicate or "
              f"skipped; {rejected_list} says why for each", file=sys.stderr)
        return exit_status.FAILED
    for name in sorted(name for name, entry in manifest.splits.items() if not entry.written):
        print(f"preprocess: warning: {name}: no image was written (found {manifest.splits[name].found} files); "
              f"{rejected_list} says why for each", file=sys.stderr)
    return 0
