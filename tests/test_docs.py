"""The examples of the docs run as written.

Each Markdown file of docs/ (and README.md) is one test: its code blocks run **in document
order**, in one fresh temporary working directory (holding copies of the repository's
``configs/`` and ``tools/`` when the file has shell commands), so a command can use what an
earlier block wrote (``runs/``, ``data/``):

- a ```python block runs with ``exec``, one namespace per file (components it registers do
  not leak into other tests);
- in a ```bash block, every line (``\\`` continuations joined, trailing ``# comments``
  dropped) that starts with ``visionkit `` or ``python tools/`` runs in this process
  (``visionkit.cli.main``; ``runpy`` for ``tools/*.py``: no interpreter start-up per command)
  and must exit 0; other lines (``pip install``, ``rm``, ``/usr/bin/time ...``) are not run.

A tag in an HTML comment on the line just before a block changes that:

  ``<!-- test: skip (why) -->``  never run (the block needs your data, a video, a GPU);
  ``<!-- test: slow (why) -->``  run only when ``VISIONKIT_DOCS_SLOW=1`` (full training runs);
  ``<!-- test: small: KEY=VALUE ... -->``  (bash) append these config overrides to each
      ``train`` command of the block (``trainer.max_epochs=1 trainer.limit_train_batches=2``):
      the fast variant, run by default; with ``VISIONKIT_DOCS_SLOW=1`` the block runs as
      written.

A ```text block's ``$ command`` lines whose output shown below is an error (``error: ...``)
run too (in a folder holding copies of ``configs/`` and ``tools/``), and must print that
(log lines aside): the documented messages are the real ones.

Keep the default variant of a page under ~20 s of CPU; docs/extending.md says the same.
docs/configs.md must equal :func:`visionkit.config.reference.render_config_reference`
(``python tools/gen_config_docs.py`` regenerates it).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shlex
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from visionkit.evaluation.tasks import TASKS
from visionkit.registry import BACKBONES, DATASETS, HEADS, NECKS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BLOCK = re.compile(
    r"(?:^<!--\s*test:\s*(?P<tag>.*?)\s*-->[ \t]*\n)?"
    r"^```(?P<lang>python|bash|sh|shell)[ \t]*\n(?P<body>.*?)^```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
SLOW = os.environ.get("VISIONKIT_DOCS_SLOW") == "1"
TRAIN = ("visionkit train", "python tools/train.py")
TAGS = ("", "skip", "slow", "small")


class Block(NamedTuple):
    kind: str  # "python" or "bash"
    tag: str  # the text after "test:", or ""
    code: str  # python source, or the runnable command lines joined by newlines
    line: int  # 0-based index of the line where its code starts


def code_blocks(path: Path) -> list[Block]:
    """The python blocks and the bash blocks with runnable commands of ``path``, in order."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("body"))
        tag = (match["tag"] or "").strip()
        if match["lang"] == "python":
            blocks.append(Block("python", tag, match["body"], line))
            continue
        joined = re.sub(r"\s*\\\n\s*", " ", match["body"])
        lines = [item.split(" #", 1)[0].strip() for item in joined.splitlines()]
        commands = [item for item in lines if item.startswith(("visionkit ", "python tools/"))]
        if commands:
            blocks.append(Block("bash", tag, "\n".join(commands), line))
    return blocks


def tag_kind(tag: str) -> str:
    """``skip``, ``slow``, ``small`` or ``""`` from a tag such as ``slow (a full run)``."""
    kind = tag.split(":")[0].split()[0] if tag else ""
    if kind not in TAGS:
        raise ValueError(f"unknown docs test tag {tag!r}: use skip, slow or small: OVERRIDES")
    return kind


def runs_now(tag: str) -> bool:
    kind = tag_kind(tag)
    return kind != "skip" and (kind != "slow" or SLOW)


def command_line(line: str, tag: str) -> list[str] | None:
    """The argv of one documented command under its block's tag; ``None``: not run now."""
    if not runs_now(tag):
        return None
    argv = shlex.split(line)
    if tag_kind(tag) == "small" and not SLOW and line.startswith(TRAIN):
        argv += shlex.split(tag.split(":", 1)[1])
    return argv


def run_in_process(argv: list[str]) -> tuple[int, str]:
    """Run ``visionkit ...`` or ``python tools/x.py ...`` here; (exit status, its output)."""
    from visionkit.cli import main

    output = io.StringIO()
    old_argv = sys.argv
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            if argv[0] == "visionkit":
                code = main(argv[1:])
            else:
                sys.argv = argv[1:]
                runpy.run_path(argv[1], run_name="__main__")
                code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    finally:
        sys.argv = old_argv
    return code, output.getvalue()


DOC_FILES = sorted(p for p in [ROOT / "README.md", *DOCS.glob("*.md")] if code_blocks(p))


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_examples_run(path, tmp_path, monkeypatch, request):
    blocks = [b for b in code_blocks(path) if runs_now(b.tag)]
    if not blocks:
        pytest.skip(f"{path.name}: every block is tagged slow or skip")
    if any(b.kind == "bash" for b in blocks):  # copies: an example may write into them
        for name in ("configs", "tools"):
            shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__*"))
    monkeypatch.chdir(tmp_path)
    # Components registered by an example must not leak into other tests.
    for registry in (BACKBONES, HEADS, NECKS, DATASETS):
        registry.names()  # its built-in names registered first (the home is imported once)
        monkeypatch.setattr(registry, "_builders", dict(registry._builders))
    tasks = dict(TASKS)  # nor tasks (docs/extending.md registers 'presence')
    request.addfinalizer(lambda: (TASKS.clear(), TASKS.update(tasks)))
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for block in blocks:
        where = f"{path.name}:{block.line + 1}"
        if block.kind == "python":
            exec(compile(block.code, f"{where} (python block)", "exec"), namespace)
            continue
        for line in block.code.splitlines():
            code, output = run_in_process(command_line(line, block.tag))
            assert code == 0, f"{where}: `{line}` exited {code}:\n{output[-4000:]}"


DOCUMENTED_ERROR = re.compile(r"^```text\n(.*?)^```", re.DOTALL | re.MULTILINE)


def documented_errors(path: Path) -> list[tuple[str, str]]:
    """The ``$ command`` lines of ``path``'s text blocks whose output shown below them is an
    error (``error: ...``), each with that output."""
    found = []
    for block in DOCUMENTED_ERROR.findall(path.read_text(encoding="utf-8")):
        parts = re.split(r"^\$ (.*)\n", block, flags=re.MULTILINE)
        for command, shown in zip(parts[1::2], parts[2::2], strict=True):
            if shown.startswith("error:"):
                found.append((command, shown.strip()))
    return found


@pytest.mark.parametrize(
    "path", [p for p in DOC_FILES if documented_errors(p)], ids=lambda p: p.name
)
def test_documented_errors_are_what_the_command_prints(path, tmp_path, monkeypatch):
    """An error shown under ``$ command`` is what that command prints today (two had drifted)."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__*"))
    monkeypatch.chdir(tmp_path)
    for command, shown in documented_errors(path):
        code, output = run_in_process(shlex.split(command))
        printed = [line for line in output.splitlines() if not line.startswith(("INFO", "WARN"))]
        assert code != 0 and "\n".join(printed).strip() == shown, f"{path.name}: $ {command}"


def test_blocks_tags_and_small_overrides_are_read(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- test: small: trainer.max_epochs=1 -->\n```bash\n"
        "python tools/train.py --config c.yaml \\\n    a=1   # comment\n"
        "visionkit eval --checkpoint x.ckpt\npip install -e .\n```\n\n"
        "```python\nx = 1\n```\n"
        "<!-- test: slow (a long run) -->\n```bash\nvisionkit train --config c.yaml\n```\n"
        "```bash\npip install visionkit\n```\n"
    )
    small, python, slow = code_blocks(doc)
    assert small.kind == "bash" and small.tag == "small: trainer.max_epochs=1"
    lines = small.code.splitlines()
    assert lines == [
        "python tools/train.py --config c.yaml a=1",
        "visionkit eval --checkpoint x.ckpt",
    ]
    assert python == ("python", "", "x = 1\n", 9)  # its code starts on line 10
    assert slow.tag == "slow (a long run)" and runs_now(slow.tag) is SLOW
    train = command_line(lines[0], small.tag)
    assert train == ["python", "tools/train.py", "--config", "c.yaml", "a=1"] + (
        [] if SLOW else ["trainer.max_epochs=1"]
    )
    assert command_line(lines[1], small.tag) == ["visionkit", "eval", "--checkpoint", "x.ckpt"]
    assert command_line(lines[0], "skip (needs a GPU)") is None
    with pytest.raises(ValueError, match="unknown docs test tag"):
        command_line(lines[0], "sometimes")


def test_commands_run_in_process_with_their_exit_status(monkeypatch):
    monkeypatch.chdir(ROOT)
    code, output = run_in_process(["visionkit", "list", "necks", "nothing*"])
    assert code == 1 and "0 necks matching 'nothing*'" in output
    code, output = run_in_process(["python", "tools/gen_config_docs.py", "--check"])
    assert code == 0 and "up to date" in output
    code, output = run_in_process(["visionkit", "list", "optimizers"])
    assert code == 2 and "invalid choice" in output


def test_docs_have_examples_and_valid_tags():
    kinds = {b.kind for path in DOC_FILES for b in code_blocks(path)}
    assert kinds == {"python", "bash"}, f"no runnable examples found in {DOCS}"
    for path in DOC_FILES:
        for block in code_blocks(path):
            tag_kind(block.tag)  # raises on a misspelt tag


def test_configs_md_is_the_rendered_schema():
    from visionkit.config.reference import render_config_reference

    text = (DOCS / "configs.md").read_text(encoding="utf-8")
    assert text == render_config_reference(), (
        "docs/configs.md is out of date: run python tools/gen_config_docs.py"
    )


def test_every_config_key_has_a_description():
    from visionkit.config.reference import DESCRIPTIONS, schema_keys

    missing = [key for key in schema_keys() if not DESCRIPTIONS.get(key)]
    assert not missing, f"add these keys to visionkit/config/reference.py DESCRIPTIONS: {missing}"
