"""A job's config dataclass as command-line flags, and the errors a command ends with in one line."""
import argparse
import dataclasses
import math
import typing

# Each field's metadata declares its flag's help and choices, its bounds (checked by `check_fields`, so no job keeps a
# list of its own), and, where a job needs it, its role.


def config_field(default, help, choices=None, minimum=None, maximum=None, role=None):
    """A config dataclass field that documents and bounds its own flag."""
    kwargs = {"default_factory": lambda: default} if isinstance(default, (list, dict)) else {"default": default}
    return dataclasses.field(metadata={"help": help, "choices": choices, "minimum": minimum, "maximum": maximum,
                                       "role": role}, **kwargs)


def check_fields(config):
    """A UsageError naming the flag of the first field whose value lies outside the bounds its metadata declares."""
    for field in dataclasses.fields(config):
        value, low, high = getattr(config, field.name), field.metadata.get("minimum"), field.metadata.get("maximum")
        if isinstance(value, float) and not math.isfinite(value):  # nan passes every comparison's "not below"
            raise UsageError(f"--{field.name} {value}: must be a finite number")
        if low is not None and high is not None and not low <= value <= high:
            raise UsageError(f"--{field.name} {value}: must be between {low} and {high}")
        if low is not None:
            check_at_least((f"--{field.name}", value, low))


def add_config_flags(parser, config_cls, skip=()):
    """One `--name` flag per field of `config_cls`; unset flags stay None so a preset's value survives."""
    hints = typing.get_type_hints(config_cls)
    group = parser.add_argument_group(f"{config_cls.__name__} fields")
    for field in dataclasses.fields(config_cls):
        if field.name in skip:
            continue
        kind = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        meta = field.metadata
        help_text = f"{meta.get('help', '')} (default: {default!r})".replace("%", "%%")  # argparse formats help
        if kind is bool:
            group.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(kind) in (list, tuple):
            (item,) = set(typing.get_args(kind)) - {Ellipsis}
            group.add_argument(f"--{field.name}", type=item, action="append", default=None, metavar="VALUE",
                               help=help_text + "; repeat the flag for several values")
        else:
            group.add_argument(f"--{field.name}", type=kind, default=None, choices=meta.get("choices"),
                               metavar=None if meta.get("choices") else field.name.upper(), help=help_text)


def view(config, fields_of):
    """The part of `config` a module reads: an instance of its dataclass `fields_of` with the same-named values."""
    return fields_of(**{field.name: getattr(config, field.name) for field in dataclasses.fields(fields_of)})


def config_from_flags(base, args):
    """`base` with every flag the user set applied on top."""
    names = {f.name for f in dataclasses.fields(base)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    for name, value in overrides.items():
        if isinstance(getattr(base, name), tuple):
            overrides[name] = tuple(value)
    return dataclasses.replace(base, **overrides)


def finite_float(text):
    """argparse's `type=float` on every job's parser: nan and inf are refused as the flag's value."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def job_parser(prog, description):
    """The argument parser of one subcommand; its module docstring is the help text, kept as written."""
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.register("type", float, finite_float)
    return parser


class UsageError(Exception):
    """A wrong flag, path or input: printed without a traceback, exit status 2."""


class JobFailed(Exception):
    """A job that ran and failed, said in one line: printed without a traceback, exit status 1."""


def check_at_least(*minimums):
    """UsageError for the first (flag, value, lowest allowed) whose value is below its lowest."""
    for flag, value, low in minimums:
        if not value >= low:  # also nan
            raise UsageError(f"{flag} {value}: " + ("must not be negative" if low == 0 and isinstance(low, float)
                                                    else f"must be at least {low}"))
