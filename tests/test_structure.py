"""The code's shape, where a slip would not show in behaviour until much later: library code never reaches a
command module, and every config field's bounds and role are declared once and enforced."""
import ast
import dataclasses
import math
import os

import pytest

from k8s.config import SubmitConfig
from pipeline.config import PreprocessConfig
from preprocessing.commands import SUBCOMMANDS
from preprocessing.flags import UsageError, check_fields
from preprocessing.schema import DOMAINS, SPLITS
from tests.helpers import REPO
from trainer.config import HOW_TO_RUN, IDENTITY, PRESETS, TrainConfig, identity_fields

# The modules behind `cyclegan SUBCOMMAND`, read from the one registry (and the examples' generator): argument
# parsing and printing only.
COMMANDS = {"cyclegan", "k8s.examples", *(target.partition(":")[0] for target, _ in SUBCOMMANDS.values())}
PACKAGES = ("preprocessing", "pipeline", "trainer", "k8s")


def imported_modules(path):
    """Every module the file imports, at the top or inside a function."""
    tree = ast.parse(open(path).read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def library_files():
    """(module name, path) of every module in the packages and their sub-packages, commands and `__main__`
    included."""
    for package in PACKAGES:
        for folder, _, names in sorted(os.walk(os.path.join(REPO, package))):
            prefix = os.path.relpath(folder, REPO).replace(os.sep, ".")
            for name in sorted(names):
                if name.endswith(".py"):
                    yield f"{prefix}.{name[:-3]}", os.path.join(folder, name)


def test_library_code_imports_no_command_module():
    offenders = []
    for module, path in library_files():
        if module in COMMANDS or module.endswith(".__main__"):
            continue
        reached = imported_modules(path) & COMMANDS
        offenders += [f"{module} imports {command}" for command in sorted(reached)]
    assert not offenders


# trainer/'s rooms and the arrows between them: the model imports none of the others, serving never the run
TRAINER_ROOMS = ("model", "run", "serving", "evaluation")
MAY_NOT_IMPORT = {"model": {"run", "serving", "evaluation"}, "serving": {"run", "evaluation"}, "evaluation": {"run"}}


def test_the_trainers_rooms_import_one_way():
    offenders = []
    for module, path in library_files():
        room = module.split(".")[1] if module.startswith("trainer.") else None
        for other in MAY_NOT_IMPORT.get(room, ()):
            reached = sorted(name for name in imported_modules(path) if name.startswith(f"trainer.{other}"))
            offenders += [f"{module} imports {name}" for name in reached]
    assert offenders == []
    assert {name for name in os.listdir(os.path.join(REPO, "trainer")) if not name.endswith(".py")} - {
        "__pycache__"} == set(TRAINER_ROOMS)


def project_imports():
    """{module: the project's modules it imports, at the top or in a function}, a package's import of a name
    counted as an import of its module where one exists."""
    modules = dict(library_files())
    graph = {}
    for module, path in modules.items():
        reached = set()
        for name in imported_modules(path):
            while name and name not in modules:
                name = name.rpartition(".")[0]  # `from trainer.run import loop` -> trainer.run.loop, else upward
            if name and name != module and not name.endswith("__init__"):
                reached.add(name)
        graph[module] = reached
    return graph


def test_no_import_circles_and_the_foundation_imports_nothing_above_it():
    graph = project_imports()
    circles = set()

    def visit(module, path):
        for other in graph.get(module, ()):
            if other in path:
                circle = path[path.index(other):]
                start = circle.index(min(circle))
                circles.add(" -> ".join(circle[start:] + circle[:start]))
            elif other not in done:
                visit(other, path + [other])
        done.add(module)

    done = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert sorted(circles) == []
    # preprocessing/ is what both sides share: it names the commands by string (commands.py), never imports them
    upward = [f"{module} imports {other}" for module, others in graph.items() if module.startswith("preprocessing.")
              for other in others if not other.startswith("preprocessing.")]
    assert upward == []
    # trainer/model/ (the networks and the step) imports nothing of the trainer outside it
    assert [f"{m} imports {o}" for m, others in graph.items() if m.startswith("trainer.model.")
            for o in others if o.startswith("trainer.") and not o.startswith("trainer.model.")] == []


def test_no_module_imports_the_top_level_command():
    """`python -m trainer` and `python -m pipeline` run their job without `cyclegan.py`, which imports them back."""
    assert [module for module, path in library_files() if "cyclegan" in imported_modules(path)] == []


def test_split_and_domain_names_are_spelled_only_in_the_schema():
    names = {f"{split}{domain}" for split in SPLITS for domain in DOMAINS}
    spelled = []
    for module, path in library_files():
        if module == "preprocessing.schema":
            continue
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Constant) and node.value in names:
                spelled.append(f"{module}:{node.lineno} {node.value!r}")
    assert spelled == []


def test_no_function_of_the_trainer_is_longer_than_a_screen():
    """60 lines: one function reads on one screen (the loop's periodic actions are a table for that reason)."""
    long = []
    for module, path in library_files():
        if module.startswith("trainer."):
            for node in ast.walk(ast.parse(open(path).read(), path)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                    long.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []


def test_the_kubernetes_calls_print_nothing():
    """k8s/api.py calls the API and returns what it found; what a user reads is printed by the command, k8s/cli.py."""
    path = os.path.join(REPO, "k8s", "api.py")
    printing = [node.lineno for node in ast.walk(ast.parse(open(path).read(), path))
                if (isinstance(node, ast.Name) and node.id == "print")
                or (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr"))]
    assert printing == []


def test_every_train_field_says_whether_a_resume_must_keep_it():
    roles = {field.name: field.metadata.get("role") for field in dataclasses.fields(TrainConfig)}
    assert {name for name, role in roles.items() if role not in (IDENTITY, HOW_TO_RUN)} == set()
    assert {"ngf", "n_blocks", "lr", "crop_size", "precision", "seed"} <= identity_fields()
    assert not {"data", "model_dir", "steps", "cpu_replicas", "log_every"} & identity_fields()


@pytest.mark.parametrize("config", [PRESETS["tiny"], PreprocessConfig(output="out"),
                                    SubmitConfig(image="img", data="d", model_dir="m")],
                         ids=["train", "preprocess", "submit"])
def test_every_declared_bound_is_checked_with_its_flag(config):
    check_fields(config)  # the defaults pass
    bounded = [field for field in dataclasses.fields(config) if field.metadata.get("minimum") is not None]
    assert bounded
    for field in bounded:
        low, high = field.metadata["minimum"], field.metadata.get("maximum")
        below = low - (1 if isinstance(low, int) else 0.5)
        with pytest.raises(UsageError, match=f"^--{field.name} {below}: must"):
            check_fields(dataclasses.replace(config, **{field.name: below}))
        if high is not None:
            with pytest.raises(UsageError, match=f"^--{field.name} {high + 1}: must be between {low} and {high}"):
                check_fields(dataclasses.replace(config, **{field.name: high + 1}))
    for field in dataclasses.fields(config):
        if isinstance(getattr(config, field.name), float):  # nan and inf pass a bare "not below" comparison
            for value in (math.nan, math.inf, -math.inf):
                with pytest.raises(UsageError, match=f"^--{field.name} {value}: must be a finite number"):
                    check_fields(dataclasses.replace(config, **{field.name: value}))


def test_importing_a_command_loads_no_tensorflow():
    """Each command quiets TensorFlow's start-up (preprocessing.process.prepare_libraries) before importing it: a
    module that imports it at its top, reached from a command's top, would print its C++ start-up lines first."""
    import subprocess
    import sys

    script = ("import importlib, sys\n"
              f"for name in {sorted(COMMANDS - {'k8s.examples'})!r}:\n"
              "    importlib.import_module(name)\n"
              "print('tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
