"""The Beam graph of the preprocessing job, in five stages:

    Read sources   list files -> reshuffle -> read
    Prepare        validate, orient, RGB, shrink, encode, serialize; the record goes to a staging file and a
                   reference to it goes on (see staging.py)
    Shards         plan: sort each split and domain's distinct content hashes, cut them into equal rank ranges;
                   each reference finds its shard from those boundaries (a side input of n hashes); group by
                   shard -> keep one record per hash (the rest are duplicates) -> write the shard file
    Manifest       every file's one outcome (written, rejected, duplicate, skipped), counted into the manifest
                   and, unless written, reported in rejected.jsonl
    Publish        the new dataset replaces the old one, then the staging files go

Equal hashes always share a shard, so the writer can deduplicate, and shards differ in size by at most one
record. Elements are plain tuples and dicts so that any runner can pickle them.
"""
import bisect
import hashlib
import os
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline import manifest, output_folder, staging
from pipeline.shards import write_tfrecord
from pipeline.sources import FolderSource, list_files
from preprocessing import images
from preprocessing.schema import make_example, shard_name

OUTCOMES = "outcomes"
FOUND, WRITTEN, REJECTED, DUPLICATE, SKIPPED = "found", "written", "rejected", "duplicate", "skipped"
METRICS_NAMESPACE = "cyclegan.preprocess"


def outcome(split, domain, path, status, reason="", **extra):
    Metrics.counter(METRICS_NAMESPACE, f"{split}{domain}.{status}" + (f".{reason}" if reason else "")).inc()
    return beam.pvalue.TaggedOutput(OUTCOMES, {"split": split, "domain": domain, "path": path, "status": status,
                                               "reason": reason, **extra})


class ListFiles(beam.DoFn):
    """FolderSource -> (split, domain, path, path relative to the source's root), or the outcome of an entry that
    is not a file to read (a broken link, an unreadable folder, a FIFO...)."""

    def process(self, source: FolderSource):
        split, domain = source.split, source.domain
        for path, problem in list_files(source):
            if problem:
                status, reason, detail = problem
                yield outcome(split, domain, path, FOUND)
                yield outcome(split, domain, path, status, reason, detail=detail)
            else:
                yield split, domain, path, path[len(source.root):].lstrip("/")


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
        from preprocessing.process import prepare_libraries

        prepare_libraries()  # the only step that loads TensorFlow in a worker
        import tensorflow_datasets as tfds

        builder = tfds.builder_from_directory(source.builder_dir)
        dataset = builder.as_dataset(split=source.tfds_split, shuffle_files=False,
                                     decoders={source.image_key: tfds.decode.SkipDecoding()},
                                     read_config=tfds.ReadConfig(add_tfds_id=True))
        for example in dataset.as_numpy_iterator():
            path = f"tfds://{builder.name}/{example['tfds_id'].decode()}"
            yield outcome(source.split, source.domain, path, FOUND)
            yield source.split, source.domain, path, example[source.image_key]


def prepare_record(split, domain, path, data, options: images.ImageOptions):
    """One raw file's bytes -> (content hash, serialized record), or images.Rejected: the job's per-image work."""
    stored = images.prepare_image(data, options)
    sha = images.content_hash(data)
    return sha, make_example(encoded=stored.encoded, image_format=stored.image_format, height=stored.height,
                             width=stored.width, domain=domain, split=split, source_path=path, sha256=sha)


class PrepareImages(beam.DoFn):
    """(split, domain, path, bytes) -> ((split, domain, sha256), (path, staged record)), or a rejected outcome."""

    PROGRESS_EVERY_S = 10.0

    def __init__(self, options: images.ImageOptions, staging_dir):
        self.options, self.staging_dir = options, staging_dir

    def start_bundle(self):
        self.count, self.started, self.last_report = 0, time.monotonic(), time.monotonic()
        self.staged = staging.StagingFile(self.staging_dir)

    def process(self, element):
        split, domain, path, data = element
        self._progress()
        try:
            sha, record = prepare_record(split, domain, path, data, self.options)
        except images.Rejected as err:
            yield outcome(split, domain, path, REJECTED, err.reason, detail=err.detail)
            return
        yield (split, domain, sha), (path, self.staged.append(record))

    def finish_bundle(self):
        self.staged.close()

    def _progress(self):
        self.count += 1
        now = time.monotonic()
        if now - self.last_report >= self.PROGRESS_EVERY_S:
            self.last_report = now
            rate = self.count / (now - self.started)
            print(f"preprocess [worker {os.getpid()}]: {self.count} images in this bundle, {rate:.1f} images/s",
                  file=sys.stderr, flush=True)


class PlanShards(beam.DoFn):
    """(split, domain), [(sha256, size)] -> ((split, domain), (boundary hashes, shard count)); and the fingerprint.

    Shard i holds the hashes ranked in [i * N // n, (i + 1) * N // n) of the sorted distinct hashes, so the same
    images always land in the same shards. Holds one split and domain's hashes (64 bytes an image), no images.
    """

    FINGERPRINTS = "fingerprints"

    def __init__(self, config):
        self.config = config

    def process(self, element):
        (split, domain), hashes_and_sizes = element
        ranked = sorted(hashes_and_sizes)
        total = len(ranked)
        count = self.config.shard_count(split, total, sum(size for _, size in ranked))
        boundaries = [ranked[i * total // count][0] for i in range(1, count)]
        yield (split, domain), (boundaries, count)
        fingerprint = hashlib.sha256("\n".join(sha for sha, _ in ranked).encode()).hexdigest()
        yield beam.pvalue.TaggedOutput(self.FINGERPRINTS, (split, domain, fingerprint))


def to_shard(element, plans):
    (split, domain, sha), (path, ref) = element
    boundaries, count = plans[(split, domain)]
    return (split, domain, bisect.bisect_right(boundaries, sha), count), (sha, path, ref)


class WriteShards(beam.DoFn):
    """(split, domain, shard, count), [(sha, path, staged ref)] -> the shard file and its manifest entry, outcomes.

    Records are written in hash order; of several files with one hash, the first path in sorted order is kept.
    """

    def __init__(self, output):
        self.output = output

    def process(self, element):
        (split, domain, shard, count), records = element
        kept = []
        for sha, path, ref in sorted(records):
            if kept and kept[-1][0] == sha:
                yield outcome(split, domain, path, DUPLICATE, "duplicate", duplicate_of=kept[-1][1], sha256=sha)
                continue
            kept.append((sha, path, ref))
            yield outcome(split, domain, path, WRITTEN, sha256=sha)
        name = shard_name(split, domain, shard, count)
        written, size = write_tfrecord(FileSystems.join(self.output, name),
                                       staging.read_records(ref for _, _, ref in kept))
        yield {"split": split, "domain": domain, "path": name, "records": written, "bytes": size}


class ReadSources(beam.PTransform):
    """Every input file as (split, domain, path, bytes), spread over the workers, and the outcome of each file that
    is not an image to read (skipped, or unreadable)."""

    def __init__(self, sources):
        super().__init__()
        self.sources = sources

    def expand(self, pbegin):
        folder = [s for s in self.sources if isinstance(s, FolderSource)]
        tfds = [s for s in self.sources if not isinstance(s, FolderSource)]
        read, outcomes = [], []
        if folder:
            listed = (pbegin | "Folders" >> beam.Create(folder)
                      | "List" >> beam.ParDo(ListFiles()).with_outputs(OUTCOMES, main="files"))
            outcomes.append(listed[OUTCOMES])
            read.append(listed.files | "Spread files" >> beam.Reshuffle()
                        | "Read" >> beam.ParDo(ReadFiles()).with_outputs(OUTCOMES, main="files"))
        if tfds:
            slices = pbegin | "TFDS slices" >> beam.Create(tfds) | "Spread slices" >> beam.Reshuffle()
            read.append(slices | "Read TFDS" >> beam.ParDo(ReadTfds()).with_outputs(OUTCOMES, main="files"))
        return {"files": [r.files for r in read] | "All files" >> beam.Flatten(),
                OUTCOMES: outcomes + [r[OUTCOMES] for r in read] | "Read outcomes" >> beam.Flatten()}


class PlanAndWriteShards(beam.PTransform):
    """Staged records -> their shard plan (a side input of each domain's hashes) -> the shard files, deduplicated:
    each shard's summary, each record's outcome, and each domain's fingerprint."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def expand(self, records):
        planned = (records
                   | "Sizes" >> beam.MapTuple(lambda key, path_and_ref: (key, path_and_ref[1][2]))  # the staged length
                   | "Distinct" >> beam.CombinePerKey(max)
                   | "By domain" >> beam.MapTuple(lambda key, size: ((key[0], key[1]), (key[2], size)))
                   | "Group domain" >> beam.GroupByKey()
                   | "Plan" >> beam.ParDo(PlanShards(self.config)).with_outputs(PlanShards.FINGERPRINTS,
                                                                                main="plan"))
        written = (records | "To shard" >> beam.Map(to_shard, beam.pvalue.AsDict(planned.plan))
                   | "Group shard" >> beam.GroupByKey()
                   | "Write shards" >> beam.ParDo(WriteShards(staging.incoming_dir(self.config.output))).with_outputs(
                       OUTCOMES, main="shards"))
        return {"shards": written.shards, OUTCOMES: written[OUTCOMES],
                PlanShards.FINGERPRINTS: planned[PlanShards.FINGERPRINTS]}


class WriteManifest(beam.PTransform):
    """Every outcome, shard and fingerprint -> rejected.jsonl and manifest.json in the incoming folder: the paths
    of both, once each is written."""

    def __init__(self, config, source_description):
        super().__init__()
        self.config, self.source_description = config, source_description

    def expand(self, parts):
        # Gathered in one list (a few hundred bytes a report) rather than written by WriteToText, whose finalize
        # step treats the output path as a glob: a folder named with [ or * failed after all the work was done.
        incoming = staging.incoming_dir(self.config.output)
        outcomes = parts[OUTCOMES]
        reported = (outcomes | "Reports" >> beam.Filter(lambda o: o["status"] in (REJECTED, DUPLICATE, SKIPPED))
                    | "Gather reports" >> beam.combiners.ToList()
                    | "Write report" >> beam.Map(manifest.write_reports, incoming))
        counts = (outcomes
                  | "Count keys" >> beam.Map(lambda o: ((o["split"], o["domain"], o["status"], o["reason"]), 1))
                  | "Count" >> beam.CombinePerKey(sum))
        summary = ((counts | "Tag counts" >> beam.Map(lambda kv: ("count", kv)),
                    parts["shards"] | "Tag shards" >> beam.Map(lambda s: ("shard", s)),
                    parts[PlanShards.FINGERPRINTS] | "Tag fingerprints" >> beam.Map(lambda f: ("fingerprint", f)))
                   | "Summary" >> beam.Flatten() | "Gather" >> beam.combiners.ToList())
        return {"manifest": summary | "Write manifest" >> beam.Map(manifest.write, self.config,
                                                                   self.source_description, incoming),
                "reports": reported}


def build(pipeline, sources, config, source_description):
    """Add the whole job to `pipeline`; returns nothing, its outputs are files under config.output."""
    read = pipeline | "Read sources" >> ReadSources(sources)
    prepared = read["files"] | "Prepare" >> beam.ParDo(
        PrepareImages(config.image_options(), staging.staging_dir(config.output))).with_outputs(
        OUTCOMES, main="records")
    sharded = prepared.records | "Shards" >> PlanAndWriteShards(config)
    outcomes = (read[OUTCOMES], prepared[OUTCOMES], sharded[OUTCOMES]) | "Outcomes" >> beam.Flatten()
    written = ({OUTCOMES: outcomes, "shards": sharded["shards"],
                PlanShards.FINGERPRINTS: sharded[PlanShards.FINGERPRINTS]}
               | "Manifest" >> WriteManifest(config, source_description))
    # The new dataset replaces the old one only once it is whole: every shard, the report and the manifest.
    published = written["manifest"] | "Publish" >> beam.Map(
        lambda manifest_path, _: output_folder.publish(manifest_path, config.output), beam.pvalue.AsList(written["reports"]))
    # Last: the staging files (a run that waits deletes them too, also when it fails; a Dataflow job that nobody
    # waits for has only this step to do it).
    published | "Remove staging" >> beam.Map(lambda _: staging.remove(config.output))
