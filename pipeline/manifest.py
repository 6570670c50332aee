"""manifest.json: what the job read, what it wrote, and why anything was left out."""
import collections
import dataclasses
import datetime
import hashlib
import json

from apache_beam.io.filesystems import FileSystems

from pipeline.files import write_whole
from preprocessing.schema import MANIFEST_NAME, REJECTED_NAME, SCHEMA_VERSION


def _empty_counts():
    return {"found": 0, "written": 0, "rejected": {}, "duplicates": 0, "skipped": {}}


def build(summary, config, source):
    """summary: ("count", ((split, domain, status, reason), n)) | ("shard", {...}) | ("fingerprint", (s, d, fp))."""
    counts = collections.defaultdict(_empty_counts)
    shards = collections.defaultdict(list)
    fingerprints = {}
    for kind, item in summary:
        if kind == "count":
            (split, domain, status, reason), n = item
            entry = counts[f"{split}{domain}"]
            if status in ("rejected", "skipped"):
                entry[status][reason] = entry[status].get(reason, 0) + n
            else:
                entry["duplicates" if status == "duplicate" else status] += n
        elif kind == "shard":
            shards[f"{item['split']}{item['domain']}"].append(
                {"path": item["path"], "records": item["records"], "bytes": item["bytes"]})
        else:
            split, domain, fingerprint = item
            fingerprints[f"{split}{domain}"] = fingerprint
    splits = {}
    for name in sorted(set(counts) | set(shards)):
        splits[name] = {**counts[name], "shards": sorted(shards[name], key=lambda s: s["path"]),
                        "fingerprint": fingerprints.get(name, "")}
    dataset_fingerprint = hashlib.sha256(
        "\n".join(f"{name}:{fingerprints[name]}" for name in sorted(fingerprints)).encode()).hexdigest()
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "options": dataclasses.asdict(config),
        "fingerprint": dataset_fingerprint,
        "splits": splits,
    }


def write(summary, config, source, folder):
    """The manifest of the job's outputs, written into `folder` (the incoming dataset, see output_folder.publish)."""
    manifest = build(summary, config, source)
    write_whole(FileSystems.join(folder, MANIFEST_NAME), json.dumps(manifest, indent=2, sort_keys=True)
                .encode(), "application/json")
    return manifest


def write_reports(reports, output):
    """rejected.jsonl: one JSON line per file that was not written, sorted by path."""
    lines = sorted(json.dumps(entry, sort_keys=True) for entry in reports)
    write_whole(FileSystems.join(output, REJECTED_NAME), "".join(line + "\n" for line in lines).encode(),
                "application/jsonl")
