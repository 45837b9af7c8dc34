"""The examples of the docs run as written.

- ```python blocks of docs/*.md run in order, one namespace per file, in an empty working
  directory.
- ```bash blocks of docs/*.md and README.md: every line (``\\`` continuations joined, trailing
  ``# comments`` dropped) that starts with ``visionkit `` or ``python tools/`` runs, in order,
  one temporary working directory per file holding links to the repository's ``configs/`` and
  ``tools/`` (so ``runs/`` and ``data/`` a command writes are there for the next one). Other
  lines (``pip install``, ``rm``, ...) are not run. A command must exit 0. Commands run in this
  process (``visionkit.cli.main``, ``runpy`` for ``tools/*.py``), which saves the start-up of
  a new interpreter per command.
- A tag in an HTML comment on the line before a ```bash block changes that:

  ``<!-- test: skip (why) -->``  never run (the block needs data or hardware the tests lack);
  ``<!-- test: slow (why) -->``  run only when ``VISIONKIT_DOCS_SLOW=1`` (a full training run);
  ``<!-- test: small: KEY=VALUE ... -->``  append these config overrides to every
                            ``train`` command of the block (e.g. ``trainer.max_epochs=1
                            trainer.limit_train_batches=2``): the fast variant that runs by
                            default; with ``VISIONKIT_DOCS_SLOW=1`` the block runs as written.

  Write blocks so that the small variant stays under ~20 s; docs/extending.md says the same.
- docs/configs.md equals :func:`visionkit.config_docs.render_config_reference` (regenerate it
  with ``python tools/gen_config_docs.py``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

from visionkit.registry import BACKBONES, DATASETS, HEADS, NECKS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
BASH = re.compile(
    r"(?:^<!--\s*test:\s*(?P<tag>.*?)\s*-->[ \t]*\n)?^```(?:bash|sh|shell)[ \t]*\n(?P<body>.*?)^```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
SLOW = os.environ.get("VISIONKIT_DOCS_SLOW") == "1"
TRAIN = ("visionkit train", "python tools/train.py")


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def bash_blocks(path: Path) -> list[tuple[str, list[str]]]:
    """(tag, runnable command lines) of each ```bash block."""
    blocks = []
    for match in BASH.finditer(path.read_text(encoding="utf-8")):
        text = re.sub(r"\s*\\\n\s*", " ", match["body"])
        lines = [line.split(" #", 1)[0].strip() for line in text.splitlines()]
        commands = [line for line in lines if line.startswith(("visionkit ", "python tools/"))]
        if commands:
            blocks.append(((match["tag"] or "").strip(), commands))
    return blocks


def command_line(line: str, tag: str) -> list[str] | None:
    """The argv of one documented command under its block's tag; ``None``: not run now."""
    kind = tag.split(":")[0].split()[0] if tag else ""  # "skip (why)", "slow (why)"
    if kind == "skip" or (kind == "slow" and not SLOW):
        return None
    argv = shlex.split(line)
    if tag.startswith("small:") and not SLOW and line.startswith(TRAIN):
        argv += shlex.split(tag.removeprefix("small:"))
    elif kind not in ("", "slow", "small"):
        raise ValueError(f"unknown docs test tag {tag!r}: use skip, slow or small: OVERRIDES")
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


DOC_FILES = sorted(p for p in DOCS.glob("*.md") if python_blocks(p))
BASH_FILES = sorted(p for p in [ROOT / "README.md", *DOCS.glob("*.md")] if bash_blocks(p))


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_python_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Components registered by an example must not leak into other tests.
    for registry in (BACKBONES, HEADS, NECKS, DATASETS):
        monkeypatch.setattr(registry, "_builders", dict(registry._builders))
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for i, block in enumerate(python_blocks(path)):
        code = compile(block, f"{path.name}[python block {i}]", "exec")
        exec(code, namespace)


@pytest.mark.parametrize("path", BASH_FILES, ids=lambda p: p.name)
def test_shell_examples_run(path, tmp_path, monkeypatch):
    for name in ("configs", "tools"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    ran = 0
    for tag, lines in bash_blocks(path):
        for line in lines:
            argv = command_line(line, tag)
            if argv is None:
                continue
            code, output = run_in_process(argv)
            assert code == 0, (
                f"{path.name}: `{line}` (tag {tag or 'none'}) exited {code}:\n{output[-4000:]}"
            )
            ran += 1
    if not ran:
        pytest.skip(f"{path.name}: every shell block is tagged slow or skip")


def test_tags_are_read_and_small_overrides_apply_to_train_commands(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- test: small: trainer.max_epochs=1 -->\n```bash\n"
        "python tools/train.py --config c.yaml \\\n    a=1   # comment\n"
        "visionkit eval --checkpoint x.ckpt\npip install -e .\n```\n\n"
        "<!-- test: slow -->\n```bash\nvisionkit train --config c.yaml\n```\n"
    )
    (small, lines), (slow, slow_lines) = bash_blocks(doc)
    assert lines == [
        "python tools/train.py --config c.yaml a=1",
        "visionkit eval --checkpoint x.ckpt",
    ]
    assert small == "small: trainer.max_epochs=1" and slow == "slow"
    train = command_line(lines[0], small)
    assert train == ["python", "tools/train.py", "--config", "c.yaml", "a=1"] + (
        [] if SLOW else ["trainer.max_epochs=1"]
    )
    assert command_line(lines[1], small) == ["visionkit", "eval", "--checkpoint", "x.ckpt"]
    assert (command_line(slow_lines[0], slow) is None) is not SLOW
    assert command_line(lines[0], "skip") is None
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


def test_docs_have_examples():
    assert DOC_FILES, f"no ```python blocks found in {DOCS}"
    assert BASH_FILES, f"no runnable ```bash blocks found in {DOCS}"


def test_configs_md_is_the_rendered_schema():
    from visionkit.config_docs import render_config_reference

    text = (DOCS / "configs.md").read_text(encoding="utf-8")
    assert text == render_config_reference(), (
        "docs/configs.md is out of date: run python tools/gen_config_docs.py"
    )


def test_every_config_key_has_a_description():
    from visionkit.config_docs import DESCRIPTIONS, schema_keys

    missing = [key for key in schema_keys() if not DESCRIPTIONS.get(key)]
    assert not missing, f"add these keys to visionkit/config_docs.py DESCRIPTIONS: {missing}"
