"""The Beam graph of the preprocessing job.

    sources -> list files -> reshuffle -> read -> prepare (validate, orient, RGB, shrink, encode)
            -> plan shards from the distinct content hashes (sorted, so shards are deterministic)
            -> join records with the plan by (split, domain, hash): one kept per hash, the rest duplicates
            -> group by shard -> write shard files
    every file also yields exactly one outcome (written, rejected, duplicate, skipped), counted into the manifest
    and, unless written, reported in rejected.jsonl.

Elements are plain tuples and dicts so that any runner can pickle and shuffle them.
"""
import hashlib
import json
import os
import sys
import time

import apache_beam as beam

from cyclegan import quiet_libraries

quiet_libraries()  # before TensorFlow loads, also in each Beam worker process that unpickles this module's DoFns

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline import manifest
from pipeline.shards import write_tfrecord
from pipeline.sources import FolderSource
from preprocessing import images
from preprocessing.schema import REJECTED_NAME, make_example, shard_name

OUTCOMES = "outcomes"
FOUND, WRITTEN, REJECTED, DUPLICATE, SKIPPED = "found", "written", "rejected", "duplicate", "skipped"
METRICS_NAMESPACE = "cyclegan.preprocess"


def outcome(split, domain, path, status, reason="", **extra):
    Metrics.counter(METRICS_NAMESPACE, f"{split}{domain}.{status}" + (f".{reason}" if reason else "")).inc()
    return beam.pvalue.TaggedOutput(OUTCOMES, {"split": split, "domain": domain, "path": path, "status": status,
                                               "reason": reason, **extra})


class ListFiles(beam.DoFn):
    """FolderSource -> (split, domain, path, path relative to the source's root)."""

    def process(self, source: FolderSource):
        for match in FileSystems.match([source.pattern])[0].metadata_list:
            yield source.split, source.domain, match.path, match.path[len(source.root):].lstrip("/")


class ReadFiles(beam.DoFn):
    """(split, domain, path, relative) -> (split, domain, path, bytes), or a skipped outcome."""

    def process(self, element):
        split, domain, path, relative = element
        yield outcome(split, domain, path, FOUND)
        reason = images.skip_reason(relative)
        if reason:
            yield outcome(split, domain, path, SKIPPED, reason)
            return
        try:
            with FileSystems.open(path, compression_type="uncompressed") as f:
                data = f.read()
        except Exception as err:  # a vanished or unreadable file must not stop the job
            yield outcome(split, domain, path, REJECTED, "unreadable", detail=str(err)[:500])
            return
        yield split, domain, path, data


class ReadTfds(beam.DoFn):
    """TfdsSource -> (split, domain, tfds://name/id, encoded image bytes as TFDS stored them)."""

    def process(self, source):
        import tensorflow_datasets as tfds

        builder = tfds.builder_from_directory(source.builder_dir)
        dataset = builder.as_dataset(split=source.tfds_split, shuffle_files=False,
                                     decoders={source.image_key: tfds.decode.SkipDecoding()},
                                     read_config=tfds.ReadConfig(add_tfds_id=True))
        for example in dataset.as_numpy_iterator():
            path = f"tfds://{builder.name}/{example['tfds_id'].decode()}"
            yield outcome(source.split, source.domain, path, FOUND)
            yield source.split, source.domain, path, example[source.image_key]


class PrepareImages(beam.DoFn):
    """(split, domain, path, bytes) -> ((split, domain, sha256), record), or a rejected outcome."""

    PROGRESS_EVERY_S = 10.0

    def __init__(self, options: images.ImageOptions):
        self.options = options

    def start_bundle(self):
        self.count, self.started, self.last_report = 0, time.monotonic(), time.monotonic()

    def process(self, element):
        split, domain, path, data = element
        self._progress()
        try:
            stored = images.prepare_image(data, self.options)
        except images.Rejected as err:
            yield outcome(split, domain, path, REJECTED, err.reason, detail=err.detail)
            return
        record = {"path": path, "encoded": stored.encoded, "format": stored.image_format,
                  "height": stored.height, "width": stored.width}
        yield (split, domain, images.content_hash(data)), record

    def _progress(self):
        self.count += 1
        now = time.monotonic()
        if now - self.last_report >= self.PROGRESS_EVERY_S:
            self.last_report = now
            rate = self.count / (now - self.started)
            print(f"preprocess [worker {os.getpid()}]: {self.count} images in this bundle, {rate:.1f} images/s",
                  file=sys.stderr, flush=True)


class PlanShards(beam.DoFn):
    """(split, domain), [(sha256, size)] -> ((split, domain, sha256), (shard, count)); plus the fingerprint.

    Ranks by sorted hash, so the same images always land in the same shards, and shard sizes differ by at most one
    record. Holds one (split, domain)'s hashes (64 bytes an image), never the images.
    """

    FINGERPRINTS = "fingerprints"

    def __init__(self, config):
        self.config = config

    def process(self, element):
        (split, domain), hashes_and_sizes = element
        ranked = sorted(hashes_and_sizes)
        count = self.config.shard_count(split, len(ranked), sum(size for _, size in ranked))
        for rank, (sha, _) in enumerate(ranked):
            yield (split, domain, sha), (rank % count, count)
        fingerprint = hashlib.sha256("\n".join(sha for sha, _ in ranked).encode()).hexdigest()
        yield beam.pvalue.TaggedOutput(self.FINGERPRINTS, (split, domain, fingerprint))


def keep_one_per_hash(element):
    """(split, domain, sha256), {records, plan} -> ((split, domain, shard, count), (sha, record)) and outcomes."""
    (split, domain, sha), grouped = element
    records = sorted(grouped["records"], key=lambda r: r["path"])
    ((shard, count),) = grouped["plan"]
    kept = records[0]
    yield outcome(split, domain, kept["path"], WRITTEN, sha256=sha)
    for duplicate in records[1:]:
        yield outcome(split, domain, duplicate["path"], DUPLICATE, "duplicate", duplicate_of=kept["path"],
                      sha256=sha)
    yield (split, domain, shard, count), (sha, kept)


class WriteShards(beam.DoFn):
    """(split, domain, shard, count), [(sha, record)] -> the shard file, and its manifest entry."""

    def __init__(self, output):
        self.output = output

    def process(self, element):
        (split, domain, shard, count), records = element
        name = shard_name(split, domain, shard, count)
        serialized = (make_example(encoded=r["encoded"], image_format=r["format"], height=r["height"],
                                   width=r["width"], domain=domain, split=split, source_path=r["path"], sha256=sha)
                      for sha, r in sorted(records, key=lambda item: item[0]))
        written = write_tfrecord(FileSystems.join(self.output, name), serialized)
        yield {"split": split, "domain": domain, "path": name, "records": written}


def build(pipeline, sources, config, source_description):
    """Add the whole job to `pipeline`; returns nothing, its outputs are files under config.output."""
    folder = [s for s in sources if isinstance(s, FolderSource)]
    tfds = [s for s in sources if not isinstance(s, FolderSource)]
    raw = []
    if folder:
        listed = (pipeline | "Folders" >> beam.Create(folder) | "List" >> beam.ParDo(ListFiles())
                  | "Spread files" >> beam.Reshuffle())
        raw.append(listed | "Read" >> beam.ParDo(ReadFiles()).with_outputs(OUTCOMES, main="files"))
    if tfds:
        slices = pipeline | "TFDS slices" >> beam.Create(tfds) | "Spread slices" >> beam.Reshuffle()
        raw.append(slices | "Read TFDS" >> beam.ParDo(ReadTfds()).with_outputs(OUTCOMES, main="files"))
    files = [r.files for r in raw] | "All files" >> beam.Flatten()
    prepared = files | "Prepare" >> beam.ParDo(PrepareImages(config.image_options())).with_outputs(
        OUTCOMES, main="records")

    planned = (prepared.records
               | "Sizes" >> beam.MapTuple(lambda key, record: (key, len(record["encoded"])))
               | "Distinct" >> beam.CombinePerKey(max)
               | "By domain" >> beam.MapTuple(lambda key, size: ((key[0], key[1]), (key[2], size)))
               | "Group domain" >> beam.GroupByKey()
               | "Plan" >> beam.ParDo(PlanShards(config)).with_outputs(PlanShards.FINGERPRINTS, main="plan"))
    kept = ({"records": prepared.records, "plan": planned.plan} | "Join" >> beam.CoGroupByKey()
            | "Dedup" >> beam.FlatMap(keep_one_per_hash).with_outputs(OUTCOMES, main="kept"))
    shards = (kept.kept | "Group shard" >> beam.GroupByKey()
              | "Write shards" >> beam.ParDo(WriteShards(config.output)))

    outcomes = [r[OUTCOMES] for r in raw] + [prepared[OUTCOMES], kept[OUTCOMES]] | "Outcomes" >> beam.Flatten()
    (outcomes | "Reports" >> beam.Filter(lambda o: o["status"] in (REJECTED, DUPLICATE, SKIPPED))
     | "JSON" >> beam.Map(json.dumps, sort_keys=True)
     | "Write report" >> beam.io.WriteToText(FileSystems.join(config.output, REJECTED_NAME), num_shards=1,
                                             shard_name_template=""))
    counts = (outcomes | "Count keys" >> beam.Map(lambda o: ((o["split"], o["domain"], o["status"], o["reason"]), 1))
              | "Count" >> beam.CombinePerKey(sum))
    summary = ((counts | "Tag counts" >> beam.Map(lambda kv: ("count", kv)),
                shards | "Tag shards" >> beam.Map(lambda s: ("shard", s)),
                planned[PlanShards.FINGERPRINTS] | "Tag fingerprints" >> beam.Map(lambda f: ("fingerprint", f)))
               | "Summary" >> beam.Flatten() | "Gather" >> beam.combiners.ToList())
    summary | "Write manifest" >> beam.Map(manifest.write, config, source_description)
