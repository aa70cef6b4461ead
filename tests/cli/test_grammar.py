"""fulora's one command-line grammar (docs/cli.md), checked on every command by walking the click tree.

The walk finds commands added later too (a new group, a new option): each must follow the grammar.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fulora_data.cli import main
from fulora_data.cli.grammar import add_verbosity_options

add_verbosity_options(main)  # what `fulora` does before it parses, for commands attached after import

# Names that an output folder, a Hub token or a repository went by before the grammar; each is kept as a
# hidden alias of the grammar's name and never shown.
OLD_OUT_NAMES = {"out_dir", "output", "output_dir", "local_dir", "workdir", "outdir"}


def runnable_commands(command: click.Command = main, path: tuple[str, ...] = ()):
    """(path, command) of every command that does something: leaves, and groups that run on their own."""
    if isinstance(command, click.Group):
        if command.invoke_without_command and path:
            yield path, command
        for name, sub in sorted(command.commands.items()):
            yield from runnable_commands(sub, (*path, name))
    else:
        yield path, command


COMMANDS = list(runnable_commands())
IDS = [" ".join(path) for path, _ in COMMANDS]


def options(command: click.Command) -> dict[str, click.Option]:
    """Every option name the command parses (hidden aliases included) -> its option."""
    return {opt: param for param in command.params if isinstance(param, click.Option) for opt in param.opts}


def shown(path: tuple[str, ...]) -> str:
    """The command's --help text."""
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_walk_finds_every_command():
    found = set(IDS)
    assert {"data list", "data prepare", "data export", "data push", "data pull", "demo", "doctor"} <= found
    assert {"evaluate", "evaluate predictions", "generate", "model push", "model pull"} <= found
    assert {"train lora", "train classifier", "data audit", "data compare", "data info"} <= found


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_command_takes_json_quiet_and_verbose(path, command):
    names = options(command)
    assert "--json" in names and names["--json"].is_flag, f"fulora {' '.join(path)} has no --json"
    assert names.get("-q") is names.get("--quiet") is not None
    assert names.get("-v") is names.get("--verbose") is not None
    text = shown(path)
    assert "--json" in text and "-q, --quiet" in text and "-v, --verbose" in text


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_a_hub_token_is_always_spelled_token(path, command):
    names = options(command)
    token_params = [p for p in command.params if isinstance(p, click.Option) and "token" in (p.name or "")]
    for param in token_params:
        assert param.opts[0] == "--token", f"fulora {' '.join(path)}: {param.opts}"
    # (export's --repo-id only names the repository in the card; export never talks to the Hub)
    pushes = {"--push-to-hub", "--push-to", "--push-results"} & set(names)
    talks_to_the_hub = pushes or path[-1] in {"push", "pull"}
    if talks_to_the_hub:
        assert "--token" in names, f"fulora {' '.join(path)} talks to the Hub and takes no --token"
    text = shown(path)
    assert "--hub-token" not in text


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_the_folder_a_command_writes_is_out_and_a_report_is_a_folder(path, command):
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        if param.name in OLD_OUT_NAMES or "--out" in param.opts:
            assert param.opts[0] == "--out", f"fulora {' '.join(path)}: {param.opts} should be --out"
            assert isinstance(param.type, click.Path) and not param.type.file_okay, param.opts
        if "--report" in param.opts:
            assert isinstance(param.type, click.Path) and not param.type.file_okay, (
                f"fulora {' '.join(path)}: --report must be a folder, as on every command"
            )
    text = shown(path)
    for old in ("--local-dir", "--workdir", "--out-dir", "--output"):
        assert old not in text


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_hint_in_a_command_help_names_one_of_its_flags_or_another_command(path, command):
    """A help text that says "with --x" means this command's --x (or names the command it belongs to)."""
    import re

    names = set(options(command))
    for param in command.params:
        for flag in re.findall(r"(?<![\w`])--[a-z][a-z0-9-]*", getattr(param, "help", None) or ""):
            assert flag in names, f"fulora {' '.join(path)}: the help of {param.name} names {flag}"


@pytest.mark.parametrize("group", [("data",), ("model",)])
def test_push_and_pull_take_the_repo_id_the_same_way(group):
    for verb in ("push", "pull"):
        command = main.commands[group[0]].commands[verb]
        assert "--repo-id" in options(command)
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        assert "repo" in [a.name for a in arguments]
        assert "[REPO_ID]" in shown((*group, verb))


@pytest.mark.parametrize(
    ("path", "old", "new", "param", "required"),
    [
        (("train", "lora"), "--hub-token", "--token", "token", ["--out", "x"]),
        (("train", "classifier"), "--hub-token", "--token", "token", ["--out", "x"]),
        (("data", "pull"), "--local-dir", "--out", "out", ["org/name"]),
        (("model", "pull"), "--local-dir", "--out", "out", ["org/name"]),
        (("demo",), "--workdir", "--out", "out", []),
    ],
)
def test_old_option_names_still_parse_as_the_new_ones(path, old, new, param, required):
    command = main
    for name in path:
        command = command.commands[name]
    # make_context parses the arguments exactly as a run would, without running the command.
    with command.make_context(path[-1], [*required, old, "value-1"]) as ctx:
        via_old = ctx.params[param]
    with command.make_context(path[-1], [*required, new, "value-1"]) as ctx:
        via_new = ctx.params[param]
    assert str(via_old) == str(via_new) == "value-1"
    assert old not in shown(path) and new in shown(path)


# ----------------------------------------------------------------------------- exit codes
BAD_VALUES = [
    (["data", "prepare", "spanish", "--config", "nosuch"], "spanish has no config 'nosuch'"),
    (["data", "prepare", "nosuchds"], "unknown dataset 'nosuchds'"),
    (["data", "info", "spanish", "--data-option", "nosuch=1"], "spanish has no option 'nosuch'"),
    (["data", "audit", "spanish", "--threshold", "99"], "got 99"),
    (["data", "audit", "spanish", "--similarity", "2"], "got 2.0"),
    (["data", "audit", "spanish", "--fail-on", "everything"], "'everything'"),
    (["data", "audit", "spanish", "--fail-on", "memorisation"], "memorisation needs --against"),
    (["data", "compare", "spanish:train", "african:test", "--per-plane", "-1"], "got -1"),
    (["data", "export", "spanish", "--out", "{tmp}/x", "--version", "1.0"], "got '1.0'"),
    (["data", "pull", "notarepo!!"], "got 'notarepo!!'"),
    (["data", "pull"], "give the Hub repository as REPO_ID or --repo-id"),
    (["data", "pull", "org/a", "--repo-id", "org/b"], "the repository is given twice"),
    (["data", "push", "{tmp}", "org/a", "--repo-id", "org/b"], "the repository is given twice"),
    (["model", "push", "{tmp}"], "give the Hub repository as REPO_ID or --repo-id"),
    (["model", "pull", "bad!!"], "got 'bad!!'"),
    (["generate", "--base", "{tmp}/none", "--out", "{tmp}/g", "--width", "13"], "got 13"),
    (["generate", "--base", "{tmp}/none", "--out", "{tmp}/g", "--samplers", "nosuch"], "'nosuch'"),
    (["train", "lora", "--out", "{tmp}/l", "--rank", "0"], "--rank must be a positive integer; got 0"),
    (["train", "lora", "--out", "{tmp}/l", "--preset", "nosuch"], "'nosuch'"),
    (["train", "classifier", "--out", "{tmp}/c", "--train-set", "XX"], "'XX'"),
    (["train", "classifier", "--out", "{tmp}/c", "--epochs", "0"], "got 0"),
    (["evaluate", "--model", "{tmp}/m", "--data", "african"], "got 'african'"),
    (["data", "list", "-q", "-v"], "-q/--quiet and -v/--verbose contradict each other"),
    (["-q", "data", "prepare", "nosuchds"], "unknown dataset 'nosuchds'"),  # -q keeps the error
    (["data", "prepare", "nosuchds", "-q"], "unknown dataset 'nosuchds'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[" ".join(a[:3]) for a, _ in BAD_VALUES])
def test_a_bad_option_value_exits_2_with_one_line(tmp_path, args, message):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # refused before writing anything


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_an_unknown_option_exits_2_on_every_command(path, command):
    result = CliRunner().invoke(main, [*path, "--no-such-option"])
    assert result.exit_code == 2 and "No such option" in result.output and "--no-such-option" in result.output


# ----------------------------------------------------------------------------- --json and -q, run for real
def test_data_prepare_and_export_json(tmp_path):
    from fulora_data.samples import write_spanish_source

    source = write_spanish_source(tmp_path / "src", per_plane=4, test_per_plane=1, seed=0)
    common = ["spanish", "--source", str(source), "--cache-dir", str(tmp_path / "cache")]
    prepared = CliRunner().invoke(main, ["data", "prepare", *common, "--json", "-q"])
    assert prepared.exit_code == 0, prepared.output
    summary = json.loads(prepared.stdout)
    assert summary["name"] == "spanish" and summary["config"] == "es" and summary["splits"] == {"train": 20}
    exported = CliRunner().invoke(main, ["data", "export", *common, "--out", str(tmp_path / "hub"), "--json"])
    assert exported.exit_code == 0, exported.output
    manifest = json.loads(exported.stdout)
    on_disk = json.loads((tmp_path / "hub" / "fulora_export.json").read_text())
    assert manifest["out"] == str(tmp_path / "hub") and manifest["configs"] == on_disk["configs"] == ["es"]
    assert manifest["version"] == on_disk["version"]


def test_push_and_pull_json_print_the_commit_and_the_tag_without_deprecation_warnings(hub_server, tmp_path):
    import uuid

    from hub_exports import make_export
    from huggingface_hub import HfApi

    repo = f"fulora/grammar-{uuid.uuid4().hex[:8]}"
    make_export(tmp_path / "export")
    runner = CliRunner()
    pushed = runner.invoke(
        main, ["data", "push", str(tmp_path / "export"), repo, "--token", hub_server.token, "--json", "-q"]
    )
    assert pushed.exit_code == 0, pushed.output
    result = json.loads(pushed.stdout)
    refs = HfApi(token=hub_server.token).list_repo_refs(repo, repo_type="dataset")
    (tag,) = refs.tags
    assert result["pushed"] and result["repo_id"] == repo and result["tag"] == tag.name == "v1.0.0"
    assert result["commit"] == tag.target_commit

    pull = [
        "data",
        "pull",
        "--repo-id",
        repo,
        "--revision",
        "v1.0.0",
        "--out",
        str(tmp_path / "copy"),
        "--json",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # setup.cfg ignores DeprecationWarning; this test looks at them
        pulled = runner.invoke(main, pull)
    assert pulled.exit_code == 0, pulled.output
    deprecated = [
        str(w.message) for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))
    ]
    assert deprecated == []  # e.g. no local_dir_use_symlinks passed to the Hub client
    got = json.loads(pulled.stdout)
    assert got["commit"] == tag.target_commit and got["revision"] == "v1.0.0" and got["repo_id"] == repo
    assert Path(got["path"]) == tmp_path / "copy" and (tmp_path / "copy" / "README.md").is_file()


def test_quiet_prints_the_result_alone_and_verbose_adds_library_logs(tiny_world, tmp_path):
    from generate_fixtures import reference_args

    runner = CliRunner()
    args = reference_args(tiny_world, tmp_path / "loud", per_plane=1, samplers="euler", planes="brain")
    args.remove("--no-progress")
    loud = runner.invoke(main, ["generate", *args])
    assert loud.exit_code == 0, loud.output
    assert loud.stderr.strip()  # info lines and the progress bar

    args = reference_args(tiny_world, tmp_path / "quiet", per_plane=1, samplers="euler", planes="brain")
    args.remove("--no-progress")
    quiet = runner.invoke(main, ["-q", "generate", *args, "--json"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert json.loads(quiet.stdout)["images"] == 1


def test_verbose_shows_the_libraries_logs_once(tmp_path):
    from fulora_data.samples import write_spanish_source

    source = write_spanish_source(tmp_path / "src", per_plane=4, test_per_plane=1, seed=0)
    args = ["data", "prepare", "spanish", "--source", str(source), "--cache-dir"]
    plain = CliRunner().invoke(main, [*args, str(tmp_path / "a")])
    assert plain.exit_code == 0 and "INFO datasets" not in plain.stderr
    verbose = CliRunner().invoke(
        main, ["-v", *args, str(tmp_path / "b"), "-v"]
    )  # on the group and the command
    assert verbose.exit_code == 0, verbose.output
    assert verbose.stderr.count("INFO datasets.builder: Generating train split") == 1
    assert verbose.stdout.startswith("spanish/es 1.0.0: train 20")


# ----------------------------------------------------------------------------- audit --fail-on
@pytest.fixture()
def leaky_african(tmp_path) -> Path:
    """An African source whose one test image has a train image's pixels (stored as RGB: other bytes)."""
    from PIL import Image

    from fulora_data.samples import png_bytes, write_african_source

    root = write_african_source(tmp_path / "src")
    with Image.open(root / "Algeria" / "patient001_DZA_plane0.png") as image:
        (root / "Algeria" / "patient004_DZA_plane1.png").write_bytes(png_bytes(image.convert("RGB")))
    return root


def test_audit_fail_on_exits_1_naming_what_it_found(leaky_african, tmp_path):
    runner = CliRunner()
    args = ["data", "audit", "african", "--source", str(leaky_african), "--cache-dir", str(tmp_path / "c")]
    passed = runner.invoke(main, args)
    assert passed.exit_code == 0, passed.output  # without --fail-on the audit only reports

    leak = runner.invoke(main, [*args, "--fail-on", "leakage", "--json"])
    assert leak.exit_code == 1
    assert json.loads(leak.stdout)["audit"]["cross_split_duplicate_pairs"] == 1  # the result is printed
    assert "Error: the audit found 1 duplicate pairs across splits (--fail-on leakage)" in leak.stderr

    both = runner.invoke(main, [*args, "--fail-on", "duplicates", "--fail-on", "label-conflicts"])
    assert both.exit_code == 1
    assert "1 exact duplicate pairs; 1 duplicate pairs whose labels disagree" in both.stderr

    clean = runner.invoke(main, [*args, "--drop-test-duplicates", "--fail-on", "leakage"])
    assert clean.exit_code == 0, clean.output


# ----------------------------------------------------------------------------- hints name real flags
# Flags of other programs that fulora's messages and docstrings mention.
OTHER_PROGRAMS = {"--num-processes", "--multi-gpu", "--mixed-precision-fp16"}


def flags_in_the_package() -> dict[str, list[str]]:
    """Each ``--flag`` written in a string of fulora_data/ (messages, hints, docstrings) -> where."""
    import ast
    import re

    import fulora_data

    root = Path(fulora_data.__file__).parent
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in re.findall(r"(?<![\w`-])--[a-z][a-z0-9_-]*[a-z0-9]", node.value):
                    if "_" not in flag:  # --num_processes and the like are accelerate's, never click's
                        found.setdefault(flag, []).append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_every_flag_the_package_names_exists_on_some_command():
    every = {"--help", "--version"}  # click's own
    for _, command in COMMANDS:
        every |= set(options(command))
    for group in (main, *[c for c in main.commands.values() if isinstance(c, click.Group)]):
        every |= set(options(group))
    missing = {flag: where for flag, where in flags_in_the_package().items() if flag not in every}
    missing = {flag: where for flag, where in missing.items() if flag not in OTHER_PROGRAMS}
    assert missing == {}


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_a_builder_hint_is_spelled_the_way_each_command_takes_it(path, command):
    from fulora_data.cli.grammar import FLAG, command_flags, fit_hints
    from fulora_data.cli.options import builder_flag_keys

    if "--data-option" not in command_flags(command):
        pytest.skip("takes no builder options")
    message = "; ".join(f"pass {flag}" for flag in builder_flag_keys())
    fitted = fit_hints(message, command)
    assert set(FLAG.findall(fitted)) <= command_flags(command), fitted


def test_train_classifier_names_the_hybrid_options_it_takes():
    from fulora_data.cli.grammar import fit_hints

    command = main.commands["train"].commands["classifier"]
    fitted = fit_hints(
        "the synthetic source has 2 Fetal brain images but synthetic_per_plane=5 asks for more; lower "
        "--synthetic-per-plane or use a larger synthetic source; use a larger --real-source or pass "
        "--real-subset-csv",
        command,
    )
    assert "lower --data-option synthetic_per_plane=VALUE or use" in fitted
    assert "use a larger --source or pass --data-option real_subset_csv=VALUE" in fitted


def test_a_pulled_model_is_used_with_an_option_of_the_command_named():
    from fulora_data.hub_pull import MODEL_KINDS, USE

    assert set(USE) == set(MODEL_KINDS)
    for kind, use in USE.items():
        words = use.format(path="PATH").split()
        assert words[0] == "fulora" and words[-1] == "PATH"
        command = main
        for word in words[1:-2]:
            command = command.commands[word]
        assert words[-2] in options(command), f"{kind}: {use}"
    assert USE["adapter"] == "fulora generate --adapter {path}"


def test_a_too_small_hybrid_source_names_the_flags_of_the_command_run(tmp_path):
    from fulora_data.samples import write_spanish_source

    # The hybrid's real part is es-1150 (230 per plane); this source has 4 per plane.
    small = write_spanish_source(tmp_path / "es", per_plane=4, test_per_plane=0, seed=0)
    synthetic = tmp_path / "synthetic"
    synthetic.mkdir()
    cache = str(tmp_path / "cache")
    prepared = CliRunner().invoke(
        main,
        ["data", "prepare", "hybrid", "--real-source", str(small), "--synthetic-source", str(synthetic)]
        + ["--cache-dir", cache],
    )
    assert prepared.exit_code == 1
    assert "use a larger --real-source or pass --real-subset-csv" in prepared.output

    trained = CliRunner().invoke(
        main,
        [
            "train",
            "classifier",
            "--train-set",
            "HB",
            "--source",
            str(small),
            "--synthetic-source",
            str(synthetic),
        ]
        + ["--cache-dir", cache, "--out", str(tmp_path / "run"), "--cpu"],
    )
    assert trained.exit_code == 1
    assert "use a larger --source or pass --data-option real_subset_csv=VALUE" in trained.output


def test_data_list_shows_each_builders_options_with_their_flags():
    from fulora_data.cli.grammar import FLAG

    result = CliRunner().invoke(main, ["data", "list"])
    assert result.exit_code == 0
    text = result.output
    assert (
        "real_subset_csv (--real-subset-csv)" in text
        and "synthetic_per_plane (--synthetic-per-plane)" in text
    )
    assert "per_plane (--data-option per_plane=VALUE)" in text and "archive_md5 (--md5)" in text
    assert sum(line.startswith("  options: ") for line in text.splitlines()) == 4  # one per dataset
    prepare = options(main.commands["data"].commands["prepare"])
    for flag in FLAG.findall(text):
        assert flag in prepare, flag


def test_install_hints_say_how_to_install_from_a_clone():
    import fulora_data
    from fulora_data.errors import MissingExtraError, require

    with pytest.raises(MissingExtraError) as caught:
        require("fulora_no_such_module", "train")
    assert str(caught.value) == (
        "fulora_no_such_module is not installed; install it with: pip install -e '.[train]' in a clone of "
        "fulora's repository"
    )
    root = Path(fulora_data.__file__).parent
    unpublished = [
        p.name for p in root.rglob("*.py") if "pip install 'fulora[" in p.read_text(encoding="utf-8")
    ]
    assert unpublished == []  # no package of that name on PyPI yet
