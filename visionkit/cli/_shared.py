"""What several subcommands share."""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from visionkit.choices import TTA_MODES, ULTRALYTICS_KEYS, ULTRALYTICS_VALUE_FLAGS, WEIGHTS
from visionkit.cli._switch_words import FALSE, TRUE, switch_words

#: The environment variables the launchers (torchrun, Lightning, SLURM, LSF) give a process's
#: rank in, in the order Lightning reads them before it sets the rank itself.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def process_rank() -> int:
    """This process's global rank in a distributed run, 0 alone: Lightning's (it sets it as
    the processes set up) once Lightning is imported, else the launcher's environment."""
    rank_zero = sys.modules.get("lightning_utilities.core.rank_zero")
    rank = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", None)
    if rank is None:
        rank = next((os.environ[k] for k in RANK_VARIABLES if k in os.environ), 0)
    return int(rank)


def is_global_zero() -> bool:
    """Whether this process reports results: rank 0 of a distributed run (every rank runs the
    command, and Lightning sets the rank when the run starts, or torchrun / SLURM before), or
    the only process."""
    return process_rank() == 0


#: The option a value of this file type goes to, when a command is missing it.
OPTION_OF_SUFFIX = {".ckpt": "--checkpoint", ".yaml": "--config", ".yml": "--config"}
#: Other tools' names of the options (Ultralytics' ``source=``, ``model=``, ``cfg=``).
OPTION_OF_NAME = {
    "--source": "--input",
    "--model": "--checkpoint",
    "--weights": "--checkpoint",
    "--ckpt": "--checkpoint",
    "--ckpt-path": "--checkpoint",
    "--ckpt_path": "--checkpoint",
    "--cfg": "--config",
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser (subcommands get the same class), whose "the following arguments are
    required" error also says which argument given without its option was probably meant for
    it, and the command with the option in place (:func:`missing_option_hint`): in
    ``visionkit eval best.ckpt``, ``best.ckpt`` is read as a ``KEY=VALUE`` override.
    ``KEY=VALUE`` overrides may come anywhere, before and after the options, as in Lightning's
    and Ultralytics' command lines (argparse alone takes them in one run only).

    ``required_unless`` (``{"config": "resume"}``: ``--config`` is required unless
    ``--resume`` is given) is checked after parsing, with argparse's own error; a ``.ckpt``
    given without its option is then taken for the alternative's value (``visionkit train
    last.ckpt``: did you mean ``--resume last.ckpt``)."""

    required_unless: dict[str, str] = {}
    #: ``hint(message, given, parser)``: more for argparse's error, from the subcommand.
    command_hint: Callable[[str, Sequence[str], argparse.ArgumentParser], str] | None = None

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extra = self.parse_known_args(args, namespace)
        parser = self._chosen(parsed)
        for dest, alternative in parser.required_unless.items():  # first, as argparse's own
            if getattr(parsed, dest, None) is None and getattr(parsed, alternative, None) is None:
                given = getattr(parser, "_given", [])
                loose_ckpt = any(a.endswith(".ckpt") and "=" not in a for a in given)
                missing = alternative if loose_ckpt else dest
                parser.error(f"the following arguments are required: --{missing.replace('_', '-')}")
        if isinstance(getattr(parsed, "overrides", None), list):  # KEY=VALUE after an option
            late = [a for a in extra if "=" in a and not a.startswith("-")]
            parsed.overrides += late
            extra = [a for a in extra if a not in late]
        if extra:  # reported by the subcommand's parser, which knows its overrides
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> ArgumentParser:
        """The subcommand's parser that parsed ``parsed`` (this one without subcommands)."""
        subparsers = next(
            (a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        command = getattr(parsed, "command", None)
        chosen = subparsers.choices.get(command, self) if subparsers else self
        return chosen if isinstance(chosen, ArgumentParser) else self

    def error(self, message: str):  # type: ignore[override]
        given = getattr(self, "_given", [])
        hint = missing_option_hint(message, given, self)
        hint += dashed_override_hint(message, given, self)
        hint += ultralytics_option_hint(message, given, self)
        hint += weights_file_hint(message, given, self)
        if self.command_hint is not None:  # what one subcommand adds (export: Ultralytics')
            hint += self.command_hint(message, given, self)
        super().error(message + hint)


def missing_option_hint(message: str, given: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """For argparse's "the following arguments are required: --opt, ..." error, what to add:
    the arguments given without an option (no leading ``-``, no ``=``, not the value of an
    option) paired with the missing options (a ``.ckpt`` with ``--checkpoint``, a ``.yaml`` with
    ``--config``, then in order), and the command with each option in place; ``""`` when there
    is nothing to pair."""
    found = re.match(r"the following arguments are required: (.*)", message)
    if not found:
        return ""
    missing = [name for name in found.group(1).split(", ") if name.startswith("--")]
    loose: list[int] = []  # positions of arguments given without an option
    pairs: dict[int, str] = {}  # position → the missing option it is given to
    values = 0  # how many of the next arguments are an option's values (-1: all up to an option)
    fixes = switch_words(parser, given)[0]  # --half True: the True is no loose argument
    for i, arg in enumerate(given):
        if i in fixes and fixes[i] is None:  # left out of the command
            continue
        if arg.startswith("-"):
            action = parser._option_string_actions.get(full_option(parser, arg) or "")
            nargs = 1 if action is None else action.nargs  # an unknown option: one value
            values = nargs if isinstance(nargs, int) else -1 if nargs in ("+", "*") else 1
            values = 0 if "=" in arg else values
            if OPTION_OF_NAME.get(arg) in missing:  # another tool's name: --source for --input
                pairs[i] = OPTION_OF_NAME[arg]
                missing.remove(pairs[i])
        elif values > 0:
            values -= 1
        elif values == 0 and "=" not in arg:
            loose.append(i)
    for i in loose:  # by file type first
        option = OPTION_OF_SUFFIX.get(Path(given[i]).suffix.lower())
        if option in missing:
            pairs[i] = option
            missing.remove(option)
    for i in loose:  # then the rest, in order, where the option takes the value
        accepted = [o for o in missing if _accepts(parser, o, given[i])]
        if i not in pairs and accepted:
            pairs[i] = accepted[0]
            missing.remove(accepted[0])
    if not pairs:
        return ""
    renamed = [i for i in sorted(pairs) if given[i].startswith("-")]
    loose_given = [i for i in sorted(pairs) if i not in renamed]
    said = [f"{given[i]} is {pairs[i]} here" for i in renamed]
    if loose_given:
        named = ", ".join(repr(given[i]) for i in loose_given)
        without = (
            "was given without its option"
            if len(loose_given) == 1
            else "were given without options"
        )
        said.append(f"{named} {without}")
    fixed = (
        pairs[i]
        if i in renamed
        else f"{pairs[i]} {shlex.quote(a)}"
        if i in pairs
        else shlex.quote(fixes.get(i, a))
        for i, a in enumerate(given)
        if fixes.get(i, a) is not None
    )
    still = [f"{o} {_metavar(parser, o)}" for o in missing]  # nothing given for these
    command = " ".join([*fixed, *still])
    return f"\n{'; '.join(said)}; did you mean:\n  {parser.prog} {command}"


def weights_file_hint(message: str, given: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """For ``--weights best.pt`` (Ultralytics' option of the file), which ``--weights ema|raw``
    refuses: where the file goes, and the command with it there (``""`` otherwise)."""
    found = re.match(r"argument --weights: invalid choice: '([^']*)'", message)
    if not found or not Path(found.group(1)).suffix:
        return ""
    said = "\n--weights picks which weights of a checkpoint trained with EMA are read (ema, raw)"
    if "--checkpoint" in given:
        return said
    fixed = [re.sub(r"^--weights(?==|$)", "--checkpoint", a) for a in given]
    return f"{said}; the file goes to --checkpoint; did you mean:\n  {parser.prog} " + " ".join(
        map(shlex.quote, fixed)
    )


def _accepts(parser: argparse.ArgumentParser, option: str, value: str) -> bool:
    """Whether ``option`` of ``parser`` takes ``value`` (any value, or one of its choices)."""
    choices = parser._option_string_actions[option].choices
    return choices is None or value in choices


def _metavar(parser: argparse.ArgumentParser, option: str) -> str:
    """How ``--help`` names the value of ``option``: ``FILE``, ``{onnx,torchscript}``, ..."""
    action = parser._option_string_actions[option]
    if action.metavar:
        return str(action.metavar)
    if action.choices:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper()


def dashed_override_hint(
    message: str, given: Sequence[str], parser: argparse.ArgumentParser
) -> str:
    """For argparse's "unrecognized arguments" error on ``--data.train.root=DIR`` or
    ``--trainer.max_steps 3`` (how Lightning's CLI writes them), or on a config key that is a
    key in one place only (``--max_epochs 3``, Lightning's Trainer flag; ``--lr=0.01``), the
    overrides as visionkit takes them: ``data.train.root=DIR trainer.max_steps=3``,
    ``trainer.max_epochs=3``; ``""`` for other arguments (Ultralytics' names are
    :func:`ultralytics_option_hint`'s), or where the command takes no overrides."""
    found = re.match(r"unrecognized arguments: (.*)", message)
    takes_overrides = any(action.dest == "overrides" for action in parser._actions)
    if not found or not takes_overrides:
        return ""
    refused = set(found.group(1).split())
    plain = []
    for i, arg in enumerate(given):
        key = _dashed_key(arg) if arg in refused else None
        if key is None:
            continue
        if "=" in arg:
            plain.append(f"{key}={arg.partition('=')[2]}")
            continue
        after = given[i + 1] if i + 1 < len(given) else ""  # --key VALUE
        value = after if after and not after.startswith("-") and "=" not in after else "VALUE"
        plain.append(f"{key}={value}")
    if not plain:
        return ""
    shown = " ".join(shlex.quote(a) for a in plain)
    return f"\nKEY=VALUE overrides are written without the leading --: {shown}"


def _dashed_key(arg: str) -> str | None:
    """The config key a refused ``--NAME[=VALUE]`` argument names: a dotted path as written
    (``--data.train.root``), or the one place of a key written alone (``--max_epochs`` →
    ``trainer.max_epochs``, dashes read as underscores); ``None`` for anything else."""
    if not arg.startswith("--"):
        return None
    name = arg[2:].partition("=")[0]
    if re.fullmatch(r"\w+\.[\w.\[\]]+", name):
        return name
    name = name.replace("-", "_")
    if name in ULTRALYTICS_KEYS:
        return None
    from visionkit.config.key_hints import key_places  # the config schema: torch, on errors only

    places = key_places().get(name, [])
    return places[0] if len(places) == 1 else None


def ultralytics_option_hint(
    message: str, given: Sequence[str], parser: argparse.ArgumentParser
) -> str:
    """For argparse's "unrecognized arguments" error on Ultralytics' training arguments
    (``--epochs 3``, ``--imgsz 640``), the config keys that say the same here
    (:data:`~visionkit.choices.ULTRALYTICS_KEYS`), given as ``KEY=VALUE`` overrides; ``""`` for
    other arguments, or where the command takes no overrides."""
    found = re.match(r"unrecognized arguments: (.*)", message)
    takes_overrides = any(action.dest == "overrides" for action in parser._actions)
    if not found or not takes_overrides:
        return ""
    lines = []
    for arg in found.group(1).split():
        name = arg.lstrip("-").split("=")[0].replace("-", "_")
        if arg.startswith("--") and name in ULTRALYTICS_KEYS:
            lines.append(f"for Ultralytics' {arg.split('=')[0]}, use {ULTRALYTICS_KEYS[name]}")
    if not lines:
        return ""
    return "\n" + "\n".join(lines) + "\n(KEY=VALUE overrides, e.g. trainer.max_epochs=3)"


def ultralytics_argument_lines(message: str, not_offered: Mapping[str, str]) -> list[str]:
    """For argparse's "unrecognized arguments" (or "ambiguous option") error on another
    tool's options (``--dynamic``, ``--vid-stride 2``), what each says here
    (``not_offered``: Ultralytics' name → what to use instead, or why there is none)."""
    names = []
    unknown = re.match(r"unrecognized arguments: (.*)", message)
    names += [a for a in unknown.group(1).split() if a.startswith("--")] if unknown else []
    ambiguous = re.match(r"ambiguous option: (--\S+) could match", message)
    names += [ambiguous.group(1)] if ambiguous else []
    lines = []
    for arg in names:
        name = arg.lstrip("-").partition("=")[0].replace("-", "_")
        if name in not_offered:
            lines.append(f"--{name} (Ultralytics'): {not_offered[name]}")
    return lines


def full_option(parser: argparse.ArgumentParser, arg: str) -> str | None:
    """The option of ``parser`` that ``arg`` (``--input``, ``--inp``, ``--inp=a.jpg``) names:
    itself, or the one option it abbreviates, as argparse reads it (every subcommand takes
    unambiguous abbreviations: ``allow_abbrev``); ``None`` for no option or several."""
    name = arg.partition("=")[0]
    if name in parser._option_string_actions:
        return name
    if not (parser.allow_abbrev and name.startswith("--")):
        return None
    found = [o for o in parser._option_string_actions if o.startswith(name)]
    return found[0] if len(found) == 1 else None


#: Options whose value is a path: a ``KEY=VALUE`` glob pattern for one is told as a glob
#: (``model=v2/*.png``), where ``[`` in any other value starts a list (``imgsz=[640,480]``).
PATH_OPTIONS = ("--checkpoint", "--input", "--output", "--output-dir", "--gallery", "--config")


def _first(parser: argparse.ArgumentParser, option: str | None) -> str | None:
    """The first name of ``option``'s action (``--image-size`` for ``--imgsz``), ``option``
    itself where ``parser`` has no such option."""
    action = parser._option_string_actions.get(option or "")
    return option if action is None else action.option_strings[0]


def list_items(value: str, separator: str | None) -> list[str] | None:
    """The items of Ultralytics' list syntax, ``[640,480]`` or ``(640, 480)``, or of a
    comma-separated ``640,480`` where the option writes lists with its own ``separator``
    (export's ``320x320``); ``None`` for a single value."""
    found = re.fullmatch(r"\[(.*)\]|\((.*)\)", value.strip())
    inner = (found.group(1) or found.group(2) or "") if found else value
    if not found and (separator is None or "," not in value):
        return None
    return [item.strip().strip("'\"") for item in inner.split(",") if item.strip()]


def key_value_lines(
    given: Sequence[str],
    parser: argparse.ArgumentParser,
    not_offered: Mapping[str, str],
    renamed: Mapping[str, str],
    separators: Mapping[str, str] | None = None,
) -> list[str]:
    """For ``KEY=VALUE`` arguments written as Ultralytics' command line takes them
    (``yolo export format=onnx imgsz=640``, ``yolo predict source=DIR conf=0.5``), the
    command with options in their place (``renamed``: Ultralytics' key → the option that
    takes its value here; otherwise ``--key-with-dashes``; the values of an option that takes
    several, ``--input``'s, after its first, abbreviated or not, ``--inp=photos`` written
    ``--inp photos more``; a list ``imgsz=[640,480]`` in the option's own syntax:
    ``separators``' joiner for it, ``--imgsz 640,480`` (export's ``320x320``), else one value
    each for an option taking several), and the arguments left out, with why: the keys
    ``not_offered``; a key whose option takes one value and is given already (``--checkpoint
    a.ckpt model=b.ckpt``), or is given a list (``device=[0,1]``), or a path option
    (:data:`PATH_OPTIONS`) given a glob pattern (``model=v2/*.png``: no file matches it, nor is
    it a checkpoint); the flags written with dashes that are ``not_offered`` (``--save``,
    ``--line-width 3``), with their value (the next argument, for one of
    :data:`~visionkit.choices.ULTRALYTICS_VALUE_FLAGS` or a True / False), so that the
    command runs; a flag ``renamed`` is given to its option here (``--vid-stride 2``:
    ``--every 2``). ``[]`` when there is no ``KEY=VALUE`` argument."""
    separators = separators or {}
    options: list[str] = []  # the command's arguments, unquoted
    full: list[str | None] = []  # the option each of options names
    fixes, dropped = switch_words(parser, given)  # --half True: --half; --half False: none
    pairs = 0
    left_out = ""  # another tool's flag just left out: its value (a next argument) goes too
    for arg in (fixes.get(i, a) for i, a in enumerate(given) if fixes.get(i, a) is not None):
        loose = left_out and not arg.startswith("-") and "=" not in arg
        if loose and (left_out in ULTRALYTICS_VALUE_FLAGS or arg.lower() in TRUE + FALSE):
            flag, _, why = dropped[-1].partition(" (")
            dropped[-1] = f"{flag} {shlex.quote(arg)} ({why}"
            left_out = ""
            continue
        left_out = ""
        key, is_pair, value = arg.partition("=")
        shown = renamed.get(key, f"--{key.replace('_', '-')}")  # as the command writes it
        option = _first(parser, shown)  # the option's first name: --image-size for --imgsz
        pairs += bool(is_pair and not arg.startswith("-"))
        action = parser._option_string_actions.get(shown)
        if arg.startswith("-"):
            name = key.lstrip("-").replace("-", "_")
            if name in not_offered and full_option(parser, arg) is None:  # its line said why
                left_out = "" if is_pair else name  # --line-width 3: the 3 too
                dropped.append(f"{arg} ({not_offered[name]})")
            elif name in renamed and full_option(parser, arg) is None:  # --vid-stride 2
                options += [renamed[name], value] if is_pair else [renamed[name]]
                full += [_first(parser, renamed[name]), *[None] * bool(is_pair)]
            else:
                options.append(arg)
                full.append(_first(parser, full_option(parser, arg)))
        elif not is_pair:
            options.append(arg)
            full.append(None)
        elif key in not_offered:
            dropped.append(f"{key} ({not_offered[key]})")
        elif action is not None and action.nargs != 0:
            several = action.nargs in ("+", "*")
            is_path = option in PATH_OPTIONS
            items = None if is_path else list_items(value, separators.get(shown))
            if items is not None and shown in separators:
                items = [separators[shown].join(items)]
            values = [value] if items is None else items
            if several and option in full:  # one --input takes them all:
                at = full.index(option)  # a second would replace the first's
                if "=" in options[at]:  # --inp=photos takes one value: --inp photos more
                    options[at : at + 1] = options[at].split("=", 1)
                    full.insert(at + 1, None)
                end = at + 1
                while end < len(options) and not options[end].startswith("-"):
                    end += 1
                options[end:end] = values
                full[end:end] = [None] * len(values)
            elif not several and (
                option in full
                or len(values) > 1
                or ("*" in value or "?" in value or (is_path and "[" in value))
            ):
                if option in full:
                    why = f"{shown} is given already"
                elif len(values) > 1:
                    why = f"{shown} takes one value, not a list: e.g. {shown} {values[0]}"
                else:
                    why = f"a glob is no {shown}"
                nothing = is_path and not os.path.exists(arg) and not glob.glob(arg, recursive=True)
                found = "; as a file or glob pattern it matches nothing" if nothing else ""
                dropped.append(f"{arg} ({why}{found})")
            else:
                options += [shown, *values]
                full += [option, *[None] * len(values)]
        elif action is not None and value.lower() in TRUE:
            options.append(shown)
            full.append(option)
    if not pairs:
        return []
    command = [shlex.quote(arg) for arg in options]
    for action in parser._actions:  # a required option the pairs did not give: to fill in
        if action.required and action.option_strings and action.option_strings[0] not in full:
            command += [action.option_strings[0], _metavar(parser, action.option_strings[0])]
    return [
        "KEY=VALUE arguments (Ultralytics' style) are options here; did you mean:\n"
        f"  {parser.prog} {' '.join(command)}",
        *(f"left out {what}" for what in dropped),
    ]


def add_tta_argument(parser: argparse.ArgumentParser) -> None:
    """``--tta`` of ``predict`` and ``eval``: test-time augmentation
    (:mod:`visionkit.inference.tta`)."""
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="test-time augmentation: 'flip' also runs the mirrored image and merges both "
        "(averaged class probabilities and label maps; boxes merged by NMS)",
    )


DEVICE_HELP = (
    "where to run: auto (the first CUDA GPU when there is one, else the CPU; default), cpu, "
    "cuda, cuda:N, N (CUDA GPU N) or mps"
)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--device``, ``--half`` and ``--bf16`` (exclusive) to a subcommand's parser; read
    them back with :func:`visionkit.inference.device.resolve_device` and
    :func:`~visionkit.inference.device.autocast_dtype`."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument(
        "--half",
        action="store_true",
        help="run the model in float16 (torch.autocast; CUDA or MPS only, refused on the CPU)",
    )
    precision.add_argument(
        "--bf16",
        action="store_true",
        help="run the model in bfloat16 (torch.autocast; CPU, or a CUDA GPU with native "
        "bfloat16: Ampere or newer)",
    )


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--weights ema|raw``: which weights of a checkpoint trained with EMA are read."""
    parser.add_argument(
        "--weights",
        choices=WEIGHTS,
        default=None,
        help="of a checkpoint trained with ema.enabled: true, the averaged (EMA) weights "
        "(default) or the raw ones (raw: a run's last.ckpt; best.ckpt keeps the EMA ones only); "
        "which were read is logged; an export holds the one set it was exported with",
    )


@contextlib.contextmanager
def report_warnings_muted() -> Iterator[None]:
    """Datasets built here do not log their reports' warnings
    (:meth:`~visionkit.data.checks.DataReport.log_warnings`): the command prints each report
    whole, warnings included (``check-data``, ``show-data``), so each is said once."""
    summary_log = logging.getLogger("visionkit.data.checks")
    level = summary_log.level
    summary_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        summary_log.setLevel(level)
