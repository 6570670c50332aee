"""Networks that start from weights made elsewhere: the reference's PyTorch generators written as a model
directory (`cyclegan import`), and a training run started from another run's networks (`--init_from`)."""
import dataclasses
import json

import keras
import tensorflow as tf

from preprocessing import lease
from preprocessing.flags import UsageError, view
from trainer import files
from trainer.model import networks, pth, reference_weights
from trainer.run import checkpoints
from trainer.run.model_dir import CHECKPOINTS, RUN_RECORD, model_path

IMPORTED = "imported"  # run.json's record of the imported generators: net name -> the file it came from
FLAGS = {"G_AB": "--a2b", "G_BA": "--b2a"}


def read_state_dict(flag, path):
    """A reference .pth (local or gs://) -> {key: array}, or a UsageError naming the flag and the file."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read(pth.MAX_FILE_BYTES + 1)  # a larger file is refused, never read whole
    except (tf.errors.OpError, OSError) as err:
        folder = path.rsplit("/", 1)[0] if "/" in path else "."
        raise UsageError(files.cannot_read(flag, folder) or f"{flag} {path}: cannot be read "
                         f"({str(err).splitlines()[0]})") from None
    try:
        state = pth.load(data)
    except pth.UnsafeFile as err:
        raise UsageError(f"{flag} {path}: refused: {err}") from None
    except Exception as err:  # a truncated or foreign file fails anywhere in zip or pickle parsing
        raise UsageError(f"{flag} {path}: not a PyTorch state dict ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise UsageError(f"{flag} {path}: holds a {type(state).__name__}, not a state dict of tensors (the "
                         "reference saves a generator's state_dict())")
    return state


def import_generators(config, sources, say=print):
    """Write config.model_dir (run.json, checkpoints/ckpt-0) with `sources`' weights (net name -> .pth path), holding
    the directory's lease as a training run does, into a folder that holds no run."""
    model_dir = config.model_dir
    if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
        raise UsageError(f"--model_dir {model_dir} is a file; name a new folder for the imported model directory")
    holder = lease.Lease(model_dir, config.lease_timeout, other_storage=files.GfileStorage,
                         clash="an import would rewrite the run.json and checkpoints of the run that holds it")
    holder.take(say)
    try:
        if tf.io.gfile.exists(model_path(model_dir, RUN_RECORD)) or checkpoints.checkpoint_candidates(model_dir):
            raise UsageError(f"--model_dir {model_dir} already holds a run ({RUN_RECORD} or checkpoints); import "
                             "into a new folder")
        return _write_imported(config, sources, say)
    finally:
        holder.release()


def _write_imported(config, sources, say):
    keras.utils.set_random_seed(config.seed)  # the nets not imported: random as a training run would start them
    nets = networks.build(view(config, networks.Shape))
    for net, path in sources.items():
        state = read_state_dict(FLAGS[net], path)
        try:
            dropped = reference_weights.load_generator(nets[net], state, config.n_blocks)
        except reference_weights.MappingError as err:
            found = reference_weights.architecture(state)
            hint = (f"it holds a generator of --ngf {found[0]} --n_blocks {found[1]}" if found
                    else "it holds no reference ResNet generator")
            raise UsageError(f"{FLAGS[net]} {path} does not fit the generator of --ngf {config.ngf} --n_blocks "
                             f"{config.n_blocks} --input_nc {config.input_nc} ({hint}):\n  "
                             + str(err).replace("\n", "\n  ")) from None
        stale = f"; dropped {dropped} stale running-statistics keys of its norms, as the reference does" * bool(dropped)
        say(f"import: {net} ({FLAGS[net][2:]}) from {path}: {len(reference_weights.convolutions(nets[net]))} "
            f"convolutions{stale}")
    step = tf.Variable(0, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step, **nets),
                                         model_path(config.model_dir, CHECKPOINTS), max_to_keep=1)
    prefix = manager.save(checkpoint_number=0)
    record = {"config": dataclasses.asdict(config), "dataset_fingerprint": "", IMPORTED: sources}
    with tf.io.gfile.GFile(model_path(config.model_dir, RUN_RECORD), "w") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    random = random_nets(record)
    say(f"import: {prefix}; random (seed {config.seed}, not imported): {', '.join(random)}")
    if len(sources) == 1:
        (net,) = sources
        say(f"import: `cyclegan export` writes {FLAGS[net][2:]} only; `cyclegan train --init_from "
            f"{config.model_dir}` fine-tunes {net} from these weights and trains {', '.join(random)} from scratch")
    return prefix


def random_nets(record):
    """The networks of a run record that `cyclegan import` gave no weights (none for a trained run)."""
    if IMPORTED not in record:
        return []
    return [net for net in networks.NAMES if net not in record[IMPORTED]]


def initialize_from(config, nets, say=print):
    """Read `nets`' weights (only those: the optimizers, pools and step stay fresh) from config.init_from, a model
    directory (its newest checkpoint that loads) or a checkpoint prefix; a UsageError if its networks differ."""
    source = config.init_from.rstrip("/")
    is_model_dir = tf.io.gfile.exists(model_path(source, RUN_RECORD))
    prefix = None if is_model_dir else checkpoints.prefix_of(source)
    model_dir = source if is_model_dir else checkpoints.model_dir_of(prefix)
    record = (checkpoints.read_run_record(model_dir, "")
              if tf.io.gfile.exists(model_path(model_dir, RUN_RECORD)) else None)
    if record:
        there = record["config"]
        differ = [f"{f.name} {there.get(f.name)!r} there, {getattr(config, f.name)!r} here"
                  for f in dataclasses.fields(networks.Shape) if there.get(f.name) != getattr(config, f.name)]
        if differ:
            raise UsageError(f"--init_from {source}: its networks are not this run's ({'; '.join(differ)}); train "
                             "with its network flags, or start from another run")
    weights = tf.train.Checkpoint(**nets)
    if is_model_dir:
        prefix = checkpoints.restore_newest(weights, source, say, flag="--init_from")
        if not prefix:
            raise UsageError(f"--init_from {source} holds no checkpoint to start from")
    else:
        try:
            weights.read(prefix).assert_existing_objects_matched().expect_partial()
        except Exception as err:  # a damaged file raises anything from OpError and AssertionError to IndexError
            raise UsageError(f"--init_from {prefix}: cannot restore the networks from it "
                             f"({checkpoints.load_failure(err)})") from None
    random = random_nets(record) if record else []
    say(f"initialised {', '.join(net for net in nets if net not in random)} from {prefix} (weights only: "
        "fresh optimizers, image pools and step 0)")
    if random:
        say(f"initialised {', '.join(random)} at random: {model_dir} was imported without them, so they train "
            "from scratch")
    return prefix
