"""The ``visionkit`` command: one module per subcommand, the help texts of every subcommand,
``--version``, ``make-shapes``, ``visionkit list`` and the ``tools/*.py`` wrappers."""

from __future__ import annotations

import argparse
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import visionkit
import visionkit.cli
from visionkit.cli import COMMANDS, build_parser, main
from visionkit.config import load_config
from visionkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = [
    "train",
    "eval",
    "predict",
    "make-shapes",
    "list",
    "convert",
    "split",
    "check-data",
    "show-data",
    "export",
    "weights",
]
# Modules of visionkit/cli/ that are not subcommands.
NOT_COMMANDS = {"__main__", "_shared", "_switch_words", "config_docs"}
# tools/*.py that are not wrappers of a visionkit subcommand.
NOT_WRAPPERS = {"benchmark", "bench_ddp", "gen_config_docs", "gen_cli_docs"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser, in the order of ``visionkit --help``."""
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_the_subcommands_are_exactly_these_in_this_order():
    assert list(subcommands()) == SUBCOMMANDS


def test_every_module_of_the_cli_package_is_a_subcommand_with_add_parser_and_run():
    found = {m.name for m in pkgutil.iter_modules(visionkit.cli.__path__)} - NOT_COMMANDS
    assert found == {c.__name__.rsplit(".", 1)[1] for c in COMMANDS}
    for command in COMMANDS:
        assert callable(command.add_parser) and callable(command.run), command.__name__


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.__name__.rsplit(".", 1)[1])
def test_parsing_a_subcommand_binds_the_run_of_its_own_module(command):
    sub = argparse.ArgumentParser().add_subparsers()
    name = command.add_parser(sub).prog.split()[-1]
    required = {
        "train": ["--config", "x.yaml"],
        "eval": ["--checkpoint", "x.ckpt"],
        "predict": ["--checkpoint", "x.ckpt", "--input", "a.png"],
        "make-shapes": ["out"],
        "list": ["heads"],
        "convert": ["--from", "voc", "src", "dst.json"],
        "split": ["src"],
        "check-data": [],
        "show-data": ["--config", "x.yaml"],
        "export": ["--checkpoint", "x.ckpt", "--format", "onnx", "--output", "m.onnx"],
        "weights": ["list"],
    }[name]
    args = build_parser().parse_args([name, *required])
    assert args.command == name and args.run is command.run


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"visionkit {visionkit.__version__}\n"


def test_benchmark_is_no_longer_a_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        main(["benchmark", "--quick"])
    assert info.value.code == 2
    assert "invalid choice: 'benchmark'" in capsys.readouterr().err


def test_make_shapes_writes_the_dataset_and_prints_its_path(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["make-shapes", str(out), "--num-images", "3", "--size", "32", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'annotations.json'}"
    data = json.loads((out / "annotations.json").read_text())
    assert [image["id"] for image in data["images"]] == [1, 2, 3]
    assert data["info"]["size"] == 32 and data["info"]["seed"] == 1


def test_make_shapes_exits_2_on_an_argument_out_of_range(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["make-shapes", str(out), "--min-shapes", "5", "--max-shapes", "2"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("error: make-shapes: ")
    assert not (out / "annotations.json").exists()


def test_a_visionkit_error_is_a_message_and_its_exit_code(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    code = main(["train", "--config", str(missing), "--print-config"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("backbone", "message"),
    [
        (
            "{name: simple_cnn, out_indices: [9]}",
            "  model.backbone.out_indices: [9] picks level 9, which 'simple_cnn' does not",
        ),
        ("{name: simple_cnn, kwargs: {foo: 1}}", "error: model.backbone.kwargs.foo: not an"),
    ],
)
def test_a_backbone_that_cannot_be_built_as_written_exits_2_as_a_config_error(
    tmp_path, capsys, backbone, message
):
    # a BackboneError (bad out_indices or kwargs: what the user wrote) exited 1, where every
    # other mistake in the config exits 2
    data = {
        split: {
            "format": "coco",
            "images": str(tmp_path / split),
            "class_field": "background",
            "synthetic": {"num_images": 2, "size": 32, "seed": seed},
        }
        for seed, split in enumerate(["train", "val"])
    }
    config = tmp_path / "c.yaml"
    config.write_text(
        json.dumps(
            {
                "output_dir": str(tmp_path / "runs"),
                "data": {**data, "image_size": 32, "batch_size": 2, "num_workers": 0},
                "model": {"heads": {"cls": {"name": "linear", "num_classes": 4}}},
                "trainer": {"max_steps": 1, "accelerator": "cpu"},
            }
        )
    )
    assert main(["train", "--config", str(config), f"model.backbone={backbone}"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_subcommand_help_has_an_example_and_every_option_a_description(name):
    parser = subcommands()[name]
    text = parser.format_help()
    assert "example: visionkit " in text, f"visionkit {name} --help shows no example"
    undocumented = [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS
    ]
    assert not undocumented, f"visionkit {name}: options without help: {undocumented}"


def test_top_level_help_has_an_example_and_describes_its_options():
    parser = build_parser()
    assert "example: visionkit " in parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):  # one line per subcommand
            for choice in action._choices_actions:
                assert choice.help and choice.help.strip(), f"{choice.dest}: no one-line help"
        else:
            assert action.help and action.help.strip(), action.option_strings or action.dest


def test_top_level_help_lists_every_exit_status_a_command_gives():
    # 130 (Ctrl-C) and 143 (SIGTERM), which docs/training.md documents, were not listed
    from visionkit.errors import TrainingInterrupted

    ctrl_c = TrainingInterrupted(None, 0, 0, signal="SIGINT", saved=False).exit_code
    term = TrainingInterrupted(None, 0, 0, saved=False).exit_code
    text = " ".join(build_parser().format_help().split("exit status:")[1].split())
    for code in (0, 1, 2, ctrl_c, term):
        assert f" {code} " in f" {text} ", code
    assert "130 stopped by Ctrl-C" in text and "143 stopped by SIGTERM" in text


@pytest.mark.parametrize("kind", ["backbones", "heads", "necks", "datasets"])
def test_list_prints_the_registered_names_and_a_count(kind, capsys):
    assert main(["list", kind]) == 0
    out, err = capsys.readouterr()
    expected = {
        "backbones": visionkit.list_backbones,
        "heads": visionkit.list_heads,
        "necks": visionkit.list_necks,
        "datasets": lambda: visionkit.registry.DATASETS.names(),
    }[kind]()
    assert out.splitlines() == expected
    noun = kind if len(expected) != 1 else kind[:-1]  # "1 neck", "7 heads"
    assert err.strip().splitlines()[-1] == f"{len(expected)} {noun}"


def test_list_filters_with_an_fnmatch_pattern(capsys):
    assert main(["list", "heads", "fcos*"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["fcos", "fcos_embedding", "fcos_keypoints", "fcos_mask"]
    assert "4 heads matching 'fcos*'" in err
    assert main(["list", "backbones", "torchvision/resnet1?"]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == ["torchvision/resnet18"]


def test_list_exits_1_when_a_pattern_matches_nothing(capsys):
    assert main(["list", "necks", "nothing*"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "0 necks matching 'nothing*'" in err


def test_list_rejects_an_unknown_kind(capsys):
    with pytest.raises(SystemExit) as info:
        main(["list", "optimizers"])
    assert info.value.code == 2
    assert "invalid choice: 'optimizers'" in capsys.readouterr().err


def wrappers() -> list[str]:
    """The ``tools/*.py`` that are thin wrappers of a ``visionkit`` subcommand."""
    return sorted(p.stem for p in (ROOT / "tools").glob("*.py") if p.stem not in NOT_WRAPPERS)


def test_the_tools_wrappers_are_these():
    assert wrappers() == ["eval", "export", "predict", "train"]


@pytest.mark.parametrize("tool", wrappers())
def test_each_tools_wrapper_is_its_visionkit_subcommand(tool, monkeypatch):
    """``python tools/<name>.py --help`` prints the help of ``visionkit <name>``."""
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps the help to this width
    result = subprocess.run(
        [sys.executable, f"tools/{tool}.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: visionkit {tool} ")
    assert result.stdout == subcommands()[tool].format_help()


@pytest.mark.parametrize("module", ["visionkit.cli", "visionkit"])
def test_python_m_visionkit_cli_is_the_visionkit_command(module):
    result = subprocess.run(
        [sys.executable, "-m", module, "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"visionkit {visionkit.__version__}\n"


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["eval", "best.ckpt"], "visionkit eval --checkpoint best.ckpt"),
        (
            ["eval", "--split", "test", "runs/a b/best.ckpt", "data.val.root=x"],
            "visionkit eval --split test --checkpoint 'runs/a b/best.ckpt' data.val.root=x",
        ),
        (
            ["eval", "--split=test", "best.ckpt"],
            "visionkit eval --split=test --checkpoint best.ckpt",
        ),
        (
            ["predict", "imgs/", "best.ckpt"],
            "visionkit predict --input imgs/ --checkpoint best.ckpt",
        ),
        (
            ["train", "configs/x.yaml", "trainer.max_steps=3"],
            "visionkit train --config configs/x.yaml trainer.max_steps=3",
        ),
        (
            ["show-data", "--split", "val", "x.yml"],
            "visionkit show-data --split val --config x.yml",
        ),
    ],
)
def test_a_required_option_given_without_its_name_is_pointed_at(argv, hint, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "the following arguments are required" in err
    assert "without its option" in err or "without options" in err
    assert err.rstrip().endswith(f"did you mean:\n  {hint}")
    fixed = build_parser().parse_args(hint.split(maxsplit=1)[1].replace("'", "").split(" "))
    assert fixed.command == argv[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["eval"],  # nothing given: nothing to point at
        ["eval", "data.val.root=x"],  # an override is not a checkpoint
        ["predict", "--checkpoint", "a.ckpt"],  # --input missing, nothing loose
        ["predict", "--input", "a.jpg", "b.jpg"],  # both are --input's values
    ],
)
def test_no_hint_when_nothing_was_given_without_its_option(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "the following arguments are required" in err
    assert "did you mean" not in err


@pytest.mark.parametrize(
    ("argv", "said", "hint"),
    [
        (
            ["predict", "--checkpoint", "x.ckpt", "--source", "imgs/"],
            "--source is --input here",
            "visionkit predict --checkpoint x.ckpt --input imgs/",
        ),
        (
            ["predict", "--model", "x.ckpt", "--source", "imgs/"],
            "--model is --checkpoint here; --source is --input here",
            "visionkit predict --checkpoint x.ckpt --input imgs/",
        ),
        (
            ["train", "--cfg", "x.yaml", "trainer.max_steps=3"],
            "--cfg is --config here",
            "visionkit train --config x.yaml trainer.max_steps=3",
        ),
    ],
)
def test_other_tools_option_names_are_pointed_at(argv, said, hint, capsys):
    """Ultralytics' source= / model= / cfg= written as options: the command with ours."""
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert f"{said}; did you mean:\n  {hint}" in err
    assert build_parser().parse_args(hint.split()[1:]).command == argv[0]


def test_lightning_cli_style_overrides_get_the_plain_form(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", "x.yaml", "--data.train.root=/a", "--trainer.max_steps", "3"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "visionkit train: error: unrecognized arguments:" in err  # the subcommand's usage
    assert err.rstrip().endswith(
        "KEY=VALUE overrides are written without the leading --: "
        "data.train.root=/a trainer.max_steps=3"
    )
    with pytest.raises(SystemExit):  # export takes no overrides: argparse's error alone
        main(["export", "--checkpoint", "a", "--format", "onnx", "--output", "b", "--data.x=1"])
    err = capsys.readouterr().err
    assert err.rstrip().endswith("unrecognized arguments: --data.x=1")


def test_ultralytics_predict_arguments_are_answered(capsys):
    """``yolo predict``'s ``--vid-stride``, ``--show``, ``--line-width``, ``--save`` and its
    ``source=DIR conf=0.5`` style were argparse's bare "unrecognized arguments" / "ambiguous
    option" / "required: --checkpoint, --input", as export's were before they got answers."""

    def error_of(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as info:
            main(["predict", *argv])
        assert info.value.code == 2
        return capsys.readouterr().err

    base = ["--checkpoint", "x.ckpt", "--input", "photos"]
    err = error_of([*base, "--vid-stride", "2", "--stream", "--show"])
    assert err.rstrip().endswith(
        "unrecognized arguments: --vid-stride 2 --stream --show\n"
        "--vid_stride (Ultralytics'): --every N (predict on frames 0, N, 2N, ...)\n"
        "--stream (Ultralytics'): always so here: inputs are read, predicted and written a "
        "batch at a time (from Python: model.predict(source, stream=True))\n"
        "--show (Ultralytics'): not offered: the drawn images are written, <name>_pred.png (a "
        "video's as <name>_pred.mp4)"
    )
    err = error_of([*base, "--save"])
    assert "ambiguous option: --save could match" in err
    assert err.rstrip().endswith(
        "--save (Ultralytics'): always so here: the drawn images are written (--no-draw: none)"
    )
    err = error_of(["model=runs/x/best.ckpt", "source=photos", "conf=0.5", "save_txt=True",
                    "vid_stride=2", "show=True", "half=True", "device=0"])  # fmt: skip
    assert err.rstrip().endswith(
        "required: --checkpoint, --input\n"
        "KEY=VALUE arguments (Ultralytics' style) are options here; did you mean:\n"
        "  visionkit predict --checkpoint runs/x/best.ckpt --input photos --conf 0.5 "
        "--save-txt --every 2 --half --device 0\n"
        "left out show (not offered: the drawn images are written, <name>_pred.png (a video's "
        "as <name>_pred.mp4))"
    )
    err = error_of([*base, "conf=0.5", "max_det=3"])
    assert err.rstrip().endswith(
        "  visionkit predict --checkpoint x.ckpt --input photos --conf 0.5 --max-det 3"
    )
    hint = err.rstrip().splitlines()[-1].split()[2:]
    assert build_parser().parse_args(["predict", *hint]).max_det == 3


def test_ultralytics_export_arguments_are_answered(tmp_path, capsys):
    """``yolo export``'s ``--dynamic --simplify``, ``--format engine`` and its ``format=onnx
    imgsz=640`` style were argparse's bare "unrecognized arguments" / "invalid choice" /
    "required: --checkpoint, --format"; ``--format ONNX`` was refused."""

    def error_of(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as info:
            main(["export", *argv])
        assert info.value.code == 2
        return capsys.readouterr().err

    err = error_of(["--checkpoint", "x.ckpt", "--format", "onnx", "--dynamic", "--simplify"])
    assert err.rstrip().endswith(
        "unrecognized arguments: --dynamic --simplify\n"
        "--dynamic (Ultralytics'): always so here: the batch size, height and width of the "
        "file are dynamic\n"
        "--simplify (Ultralytics'): no separate step here: the exporters fold constants, and "
        "the dynamo exporter optimises the graph (onnxscript)"
    )
    err = error_of(["--checkpoint", "x.ckpt", "--format", "engine"])
    assert err.rstrip().endswith(
        "for TensorRT: export --format onnx, then trtexec --onnx=model.onnx "
        "--saveEngine=model.engine"
    )
    err = error_of(["model=runs/x/best.ckpt", "format=onnx", "imgsz=640", "dynamic=True",
                    "half=True", "opset=12"])  # fmt: skip
    assert err.rstrip().endswith(
        "required: --checkpoint, --format\n"
        "KEY=VALUE arguments (Ultralytics' style) are options here; did you mean:\n"
        "  visionkit export --checkpoint runs/x/best.ckpt --format onnx --imgsz 640 --half "
        "--opset 12\n"
        "left out dynamic (always so here: the batch size, height and width of the file are "
        "dynamic)"
    )
    err = error_of(["--checkpoint", "x.ckpt", "format=onnx"])
    assert err.rstrip().endswith("  visionkit export --checkpoint x.ckpt --format onnx")
    missing = tmp_path / "none.ckpt"  # --format ONNX is taken: the checkpoint is what fails
    assert main(["export", "--checkpoint", str(missing), "--format", "ONNX"]) == 1
    assert f"export: exporting {missing} to onnx" in capsys.readouterr().err


def test_lightning_trainer_flags_get_their_config_keys(capsys):
    """``--max_epochs 3`` (Lightning's Trainer flags, as its CLI and scripts take them) and
    other keys of one place: the override with its section; Ultralytics' names and unknown
    options get no such line."""
    with pytest.raises(SystemExit):
        main(
            [
                "train",
                "--config",
                "x.yaml",
                "--max_epochs",
                "3",
                "--precision=bf16-mixed",
                "--lr",
                "0.01",
                "--accumulate-grad-batches",
                "2",
                "--bogus",
                "--imgsz",
                "64",
            ]
        )
    err = capsys.readouterr().err
    assert (
        "KEY=VALUE overrides are written without the leading --: trainer.max_epochs=3 "
        "trainer.precision=bf16-mixed optimizer.lr=0.01 trainer.accumulate_grad_batches=2\n"
    ) in err
    assert "bogus" not in err.split("unrecognized arguments:")[1].split("\n", 1)[1]
    assert "for Ultralytics' --imgsz, use data.image_size" in err


def test_ultralytics_training_arguments_are_told_their_keys(capsys):
    """``--epochs 3 --imgsz 128`` (plain argparse refused them) and ``epochs=3`` (an unknown
    key, or ``trainer.epochs`` told "did you mean 'min_epochs'")."""
    with pytest.raises(SystemExit):
        main(["train", "--config", "x.yaml", "--epochs", "3", "--imgsz", "128", "--batch", "4"])
    err = capsys.readouterr().err
    assert "for Ultralytics' --epochs, use trainer.max_epochs (a recipe's" in err
    assert (
        "for Ultralytics' --imgsz, use data.image_size (and data.val_image_size where the " in err
    )
    assert "for Ultralytics' --batch, use data.batch_size\n" in err
    export = ["export", "--checkpoint", "a.ckpt", "--format", "onnx", "--imgsz", "320"]
    assert build_parser().parse_args(export).image_size == 320  # as predict and eval
    config = {"model": {"backbone": {"name": "simple_cnn"}, "heads": {"c": {"name": "linear"}}}}
    with pytest.raises(ConfigError) as info:
        load_config(config, ["epochs=3", "trainer.epochs=3", "trainer.device=cpu", "data=a.yaml"])
    said = "\n".join(info.value.problems)
    assert "epochs: unknown key; for Ultralytics' epochs, use trainer.max_epochs" in said
    assert "trainer.epochs: unknown key; for Ultralytics' epochs, use trainer.max_epochs" in said
    assert "trainer.device: unknown key; for Ultralytics' device, use trainer.accelerator" in said
    assert "for Ultralytics' data, use data.train and data.val: {format: yolo" in said


def test_ultralytics_classify_data_folder_is_told_each_splits_root(capsys):
    """``yolo classify train data=pets`` (a folder of train/ and val/ class folders): was only
    "expected a mapping", with no word of the keys to give."""
    config = {"model": {"backbone": {"name": "simple_cnn"}, "heads": {"c": {"name": "linear"}}}}
    told = "for a classify folder DIR of train/ and val/: data.train.root=DIR/train "
    with pytest.raises(ConfigError) as info:
        load_config(config, ["data=pets"])
    (said,) = info.value.problems
    assert said.startswith("data: expected a mapping") and told in said
    with pytest.raises(SystemExit):
        main(["train", "--config", "x.yaml", "--data", "pets"])
    assert told in capsys.readouterr().err


def test_overrides_may_come_before_and_after_the_options():
    """``train --config X a=1 --output-dir runs/q b=2``: argparse alone refused ``b=2``
    ("unrecognized arguments"); Lightning and Ultralytics users mix the order."""
    argv = ["train", "--config", "x.yaml", "trainer.max_steps=1", "--output-dir", "runs/q"]
    args = build_parser().parse_args([*argv, "trainer.fast_dev_run=true", "resume=auto"])
    assert args.overrides == ["trainer.max_steps=1", "trainer.fast_dev_run=true", "resume=auto"]
    assert args.output_dir == "runs/q"
    argv = ["eval", "--checkpoint", "a.ckpt", "--split", "test", "data.test.images=t"]
    args = build_parser().parse_args([*argv, "--json", "trainer.devices=1"])
    assert args.overrides == ["data.test.images=t", "trainer.devices=1"] and args.json


def test_a_message_logged_under_a_progress_bar_gets_a_line_of_its_own(capsys):
    """A log line during training (the time budget's step estimate) printed into the bar's
    line before; it goes through tqdm.write, which moves the bar below it."""
    import logging
    import re

    from tqdm import tqdm

    from visionkit.cli import _log_to_stderr

    _log_to_stderr()
    with tqdm(total=3, file=sys.stderr, desc="Epoch 0") as bar:
        bar.update(1)
        logging.getLogger("visionkit.engine").info("trainer.max_time: about 30 steps")
        bar.update(1)
    err = capsys.readouterr().err
    assert "INFO visionkit.engine: trainer.max_time: about 30 steps" in re.split(r"[\r\n]", err)


def test_messages_are_printed_by_rank_zero_only_but_errors_by_every_rank(capsys, monkeypatch):
    """Every DDP process runs the whole command: each warning (a data note, an evaluator's
    small-set note, the precision chosen) was printed once per process."""
    import logging

    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from visionkit.cli import _log_to_stderr

    _log_to_stderr()
    log = logging.getLogger("visionkit.evaluation")
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    log.warning("a small validation set")
    log.error("rank 1 failed")
    assert capsys.readouterr().err.splitlines() == ["ERROR visionkit.evaluation: rank 1 failed"]
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    log.warning("a small validation set")
    assert "WARNING visionkit.evaluation: a small validation set" in capsys.readouterr().err


def test_an_interruption_every_rank_has_is_printed_by_rank_zero_only(capsys, monkeypatch):
    """A Ctrl-C in the terminal reaches every DDP process: each printed the same "stopped:
    ... Continue with: ..." line."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    import visionkit.cli.train
    from visionkit.cli import main
    from visionkit.errors import DataError, TrainingInterrupted

    def interrupted(args):
        raise TrainingInterrupted("runs/x/checkpoints/last.ckpt", 3, 12, signal="SIGINT")

    monkeypatch.setattr(visionkit.cli.train, "run", interrupted)
    for rank in (1, 0):
        monkeypatch.setattr(rank_zero_only, "rank", rank)
        assert main(["train", "--config", "x.yaml"]) == 130
    assert capsys.readouterr().err.count("stopped: interrupted by Ctrl-C") == 1

    def bad_data(args):  # one rank's own error: printed by the rank that has it
        raise DataError("image 7 of rank 1 cannot be read")

    monkeypatch.setattr(visionkit.cli.train, "run", bad_data)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert main(["train", "--config", "x.yaml"]) == 1
    assert "image 7 of rank 1 cannot be read" in capsys.readouterr().err


def test_output_into_a_closed_pipe_ends_quietly():
    """``visionkit check-data ... | head -3`` ended with a BrokenPipeError traceback once
    head stopped reading; now it ends with status 1 and nothing on stderr."""
    code = (
        "import sys, visionkit.cli as cli\n"
        "def write_on(argv):\n"
        "    print('x' * 100, flush=True)\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "cli._run = write_on\n"
        "sys.exit(cli.main([]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (1, "")
