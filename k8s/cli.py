"""`cyclegan submit`: run the jobs on Kubernetes, and follow them.

    cyclegan submit preprocess --image IMAGE --input gs://B/raw --output gs://B/records [--runner dataflow ...]
    cyclegan submit train --image IMAGE --data gs://B/records --model_dir gs://B/runs/h2z --gpus 8 [--nodes 4]
                          [-- any `cyclegan train` flag]
    cyclegan submit tensorboard --image IMAGE --logdir gs://B/runs/h2z/logs
    cyclegan submit serve --model gs://B/export/a2b [--gpus 1] [--replicas N] [--kserve]
    cyclegan submit list | status NAME | logs NAME [--worker N | --all] [--tail N] [--previous] [--follow]
    cyclegan submit delete NAME

`--dry-run` prints the objects as YAML and touches no cluster. Otherwise they are created with the cluster of
your kubeconfig (or the pod's own, inside a cluster); if one cannot be created, those created before it are
deleted again. Flags after `--` go to the job's own command.
"""
import dataclasses
import sys

from k8s import api as cluster
from k8s import config as submit_config
from k8s import preflight
from k8s.render import DATAFLOW_ANNOTATION, QUEUE_LABEL, SERVING_REST_PORT, TENSORBOARD_PORT, render
from preprocessing.flags import UsageError, add_config_flags, check_fields, config_from_flags, job_parser
from trainer.run.model_dir import LOGS, model_path

ACTIONS = ("preprocess", "train", "tensorboard", "serve", "list", "status", "logs", "delete")


def parse_submit(action, argv, prog="cyclegan submit"):
    """(config, flags for the job's own command, dry run?) from `submit KIND` arguments."""
    extra = []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    argv = ["--no_check" if arg == "--no-check" else arg for arg in argv]  # spelt either way, as --dry-run
    parser = job_parser(f"{prog} {action}", __doc__)
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="print the objects as YAML; touch no cluster")
    add_config_flags(parser, submit_config.SubmitConfig, skip=("kind",))
    args = parser.parse_args(argv)
    config = submit_config.with_defaults(config_from_flags(submit_config.for_kind(action), args))
    submit_config.check_config(config)
    if action == "train":
        check_train_flags(extra, config.preset)
    serving_set = sorted({arg.split("=")[0] for arg in extra} & set(SERVE_SETS)) if action == "serve" else []
    if serving_set:
        raise UsageError(f"after --: {', '.join(serving_set)} is set by submit itself (the probes, the Service and "
                         "--model depend on it); leave it out")
    if action == "serve" and config.kserve and extra:
        raise UsageError(f"after --: {' '.join(extra)}: with --kserve, KServe's TensorFlow runtime sets TF Serving's "
                         "flags; pass them without --kserve (they go to tensorflow_model_server)")
    return config, extra, args.dry_run


# What `submit serve` passes to tensorflow_model_server (k8s/render.py's serving_container).
SERVE_SETS = ("--model_name", "--model_base_path", "--port", "--rest_api_port")
# What `submit train` passes to the trainer itself (k8s/render.py): set with submit's own flags, never after --.
SUBMIT_SETS = ("--data", "--model_dir", "--preset", "--peer_timeout", "--cpu_replicas", "--first_start_timeout")


def check_train_flags(extra, preset):
    """A UsageError now, not in a pod later, for a flag after -- that `cyclegan train` would refuse or that would
    override what submit sets."""
    import argparse

    from trainer import cli as train_cli
    from trainer.config import PRESETS

    clash = sorted({arg.split("=")[0] for arg in extra} & set(SUBMIT_SETS))
    if clash:
        raise UsageError(f"after --: {', '.join(clash)} is set by submit itself; give it as a submit flag before --")
    parser = train_cli.flags()
    parser.exit_on_error = False
    try:
        args, unknown = parser.parse_known_args(extra)
    except argparse.ArgumentError as err:
        raise UsageError(f"after --: {err}") from None
    if unknown:
        raise UsageError(f"after --: {' '.join(unknown)}: not a `cyclegan train` flag (see cyclegan train --help)")
    if args.dry_run:
        raise UsageError("after --: --dry_run would end every pod before training and the Job would succeed "
                         "untrained; run `cyclegan train --dry_run` locally, or `submit train --dry-run` to see the "
                         "objects")
    if args.max_restarts_without_progress == 0:
        raise UsageError("after --: --max_restarts_without_progress 0 turns off the guard that ends a restart loop "
                         "on a cluster, where pods restart unattended; give a positive limit")
    try:
        train_cli.check_flags(config_from_flags(PRESETS[preset], args))
    except UsageError as err:
        raise UsageError(f"after --: {err}") from None


def main(argv, prog="cyclegan submit"):
    if not argv or argv[0] not in ACTIONS:
        parser = job_parser(prog, __doc__)
        parser.add_argument("action", choices=ACTIONS)
        parser.parse_args(argv[:1] or ["--help"])
    action, argv = argv[0], argv[1:]
    if action in submit_config.KINDS:
        config, extra, dry_run = parse_submit(action, argv, prog)
        name, objects = render(config, extra)
        if config.kind == "train" and config.backend == "jobset" and config.nodes == 1:
            print(f"{prog}: --backend jobset is for several nodes; one node needs no worker group, so this renders "
                  "a batch/v1 Job", file=sys.stderr)
        if config.network_profile != "none":
            print(f"{prog}: --network_profile {config.network_profile}: the pods mount host paths (GKE's NCCL plugin)"
                  + (f" and run GKE's {config.network_profile}-daemon sidecar as root with NET_ADMIN"
                     if config.network_profile in ("tcpx", "tcpxo") else "")
                  + f", which Pod Security's restricted and baseline profiles refuse: namespace "
                  f"{config.namespace} needs the label pod-security.kubernetes.io/enforce=privileged", file=sys.stderr)
        if dry_run:
            import yaml

            sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
            return 0
        if config.check or not config.no_check:
            api = cluster.api_client(config.request_timeout)
            try:
                warnings = preflight.run(api, config, objects, lambda line: print(line, file=sys.stderr))
            except UsageError:
                raise
            except Exception as err:
                raise cluster.api_error(err, "check the cluster", config.namespace) from None
            if config.check:
                print(f"check: the cluster has what {name} needs" + (" (see the warnings)" if warnings else "")
                      + "; nothing was created")
                return 0
        print_submitted(config, objects, name)
        return 0
    parser = job_parser(f"{prog} {action}", __doc__)
    if action != "list":
        parser.add_argument("name", help="the job's name, as `submit` printed it")
    if action == "logs":
        parser.add_argument("--follow", action="store_true", help="stream the log as it grows")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--worker", type=int, help="this worker's log (default: worker 0, the chief)")
        which.add_argument("--all", action="store_true", help="every worker's log, each line prefixed with it")
        parser.add_argument("--tail", type=int, help="only the last this many lines")
        parser.add_argument("--previous", action="store_true",
                            help="the log of the worker's pod before its newest one (a crashed or preempted pod)")
    parser.add_argument("--namespace", default="default", help="Kubernetes namespace (default: default)")
    default_timeout = submit_config.SubmitConfig.request_timeout
    parser.add_argument("--request_timeout", type=int, default=default_timeout,
                        help=f"seconds the action may wait for the Kubernetes API in all, retries included (default: "
                             f"{default_timeout})")
    args = parser.parse_args(argv)
    if action == "logs" and any(value is not None and value < (0 if flag == "--worker" else 1)
                                for flag, value in (("--worker", args.worker), ("--tail", args.tail))):
        raise UsageError("--worker must be 0 or more and --tail 1 or more")
    check_fields(dataclasses.replace(submit_config.SubmitConfig(), request_timeout=args.request_timeout))  # its bound
    api = cluster.api_client(args.request_timeout)
    name = getattr(args, "name", "")
    what = {"list": "list jobs", "status": f"read {name}", "logs": f"read the logs of {name}",
            "delete": f"delete {name}"}[action]
    try:
        if action == "list":
            print_list(api, args.namespace)
        elif action == "status":
            print_status(api, args.namespace, name)
        elif action == "logs":
            for line in cluster.log_lines(api, args.namespace, name, args.follow, args.worker, args.all, args.tail,
                                          args.previous):
                print(line, flush=True)
        else:
            print_removed(api, args.namespace, name)
    except UsageError:
        raise
    except Exception as err:
        raise cluster.api_error(err, what, args.namespace) from None
    return 0


def print_submitted(config, objects, name):
    for kind, created in cluster.submit(config, objects):
        print(f"submit: created {kind} {config.namespace}/{created}", flush=True)
    print(f"submit: follow it with `cyclegan submit status {name} --namespace {config.namespace}` and "
          f"`cyclegan submit logs {name} --follow --namespace {config.namespace}`")
    if config.kind == "tensorboard":
        print(f"submit: open TensorBoard with `kubectl port-forward -n {config.namespace} svc/{name} "
              f"{TENSORBOARD_PORT}:{TENSORBOARD_PORT}`, then http://localhost:{TENSORBOARD_PORT}")
    elif config.kind == "serve":
        where = (f"`kubectl get inferenceservice -n {config.namespace} {name}` shows its URL" if config.kserve else
                 f"`kubectl port-forward -n {config.namespace} svc/{name} {SERVING_REST_PORT}:{SERVING_REST_PORT}`, "
                 f"then http://localhost:{SERVING_REST_PORT}")
        print(f"submit: {where}; POST images to /v1/models/{name}:predict as {{\"signature_name\": \"serve_bytes\", "
              "\"instances\": [{\"b64\": \"...\"}]} (docs/operations.md, \"Serving\")")
    elif config.kind == "train":
        print(f"submit: watch training in TensorBoard: `cyclegan submit tensorboard --image {config.image} "
              f"--logdir {model_path(config.model_dir, LOGS)}`")


def print_list(api, namespace):
    rows = [(obj["metadata"]["name"], kind, obj["metadata"]["labels"].get("app.kubernetes.io/component", ""),
             cluster.job_state(kind, obj)) for kind, obj in cluster.submitted_jobs(api, namespace)]
    print(f"{'NAME':<42}{'KIND':<18}{'JOB':<13}STATE")
    for row in sorted(rows):
        print(f"{row[0]:<42}{row[1]:<18}{row[2]:<13}{row[3]}")


def print_status(api, namespace, name):
    """The job's objects and conditions, each worker's newest pod and what became of its earlier ones, and the
    chief's latest progress line."""
    objects = cluster.submitted_jobs(api, namespace, name)
    if not objects:
        raise UsageError(f"no job named {name} in namespace {namespace} (see `cyclegan submit list`)")
    for kind, obj in objects:
        print(f"{kind} {namespace}/{name}: {cluster.job_state(kind, obj)}")
        for condition in (obj.get("status") or {}).get("conditions") or []:
            print(f"  {condition['type']}={condition['status']}: {condition.get('reason') or ''} "
                  f"{condition.get('message') or ''}".rstrip())
        if QUEUE_LABEL in obj["metadata"].get("labels", {}):  # Kueue holds a Job suspended until it admits it
            admitted = not (obj.get("spec") or {}).get("suspend")
            print(f"  Kueue: {'admitted' if admitted else 'waiting for admission (the Job is suspended)'} in queue "
                  f"{obj['metadata']['labels'][QUEUE_LABEL]}")
    pods = cluster.pods_of(api, namespace, name)
    if objects[0][1]["metadata"]["labels"].get("app.kubernetes.io/component") == "serve":  # replicas, not workers
        for pod in pods:
            print(f"  replica {pod.metadata.name}: {cluster.why_waiting(pod) or pod.status.phase}")
        return
    workers = cluster.by_worker(pods)
    for index, pods in workers.items():
        newest, earlier = pods[0], pods[1:]
        waiting = cluster.why_waiting(newest)
        restarts = sum(c.restart_count or 0 for c in newest.status.container_statuses or []) + len(earlier)
        now = waiting or (cluster.how_it_ended(newest) if newest.status.phase in ("Succeeded", "Failed")
                          else newest.status.phase)
        print(f"  worker {index}: {now} (pod {newest.metadata.name}, {restarts} restart(s))")
        for pod in earlier:
            print(f"    earlier pod {pod.metadata.name}: {cluster.how_it_ended(pod)}")
    if workers and objects[0][1]["metadata"]["labels"].get("app.kubernetes.io/component") == "train":
        for kind, line in cluster.latest_lines(api, namespace, workers[min(workers)][0]).items():
            print(f"  latest {kind} (worker {min(workers)}): {line}")


def print_removed(api, namespace, name):
    for kind, obj in cluster.remove(api, namespace, name):
        print(f"submit: deleted {kind} {namespace}/{obj['metadata']['name']}", flush=True)
        dataflow = (obj["metadata"].get("annotations") or {}).get(DATAFLOW_ANNOTATION)
        if dataflow and cluster.job_state(kind, obj) not in ("Complete", "Failed"):
            project, region, job_name = dataflow.split("/")
            print(f"submit: its launcher cancels Dataflow job {job_name} as it stops; to check: gcloud dataflow "
                  f"jobs list --project {project} --region {region} --filter name={job_name}")
