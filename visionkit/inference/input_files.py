"""Which files an input of ``visionkit predict`` names: video suffixes
(:data:`VIDEO_EXTENSIONS`; images: :data:`~visionkit.data.batch.IMAGE_EXTENSIONS`) and glob
patterns, whose image or video suffix matches in any case and whose matches leave out system
folders the pattern does not spell out.

>>> suffix_any_case("photos/*.jpg")
'photos/*.[jJ][pP][gG]'
>>> is_glob("photos/*.jpg"), is_glob("photos/a.jpg")
(True, False)
"""

from __future__ import annotations

import glob
from pathlib import Path

from visionkit.data.batch import IMAGE_EXTENSIONS, system_folder

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def suffix_any_case(pattern: str) -> str:
    """``pattern`` with its image or video suffix matched in any case, as folders are read:
    ``photos/*.jpg`` also reads ``IMG_1.JPG`` (``photos/*.[jJ][pP][gG]``); a pattern that ends
    otherwise (``*.jp*``, ``*``, ``list.txt``) is returned as it is."""
    head, dot, suffix = pattern.rpartition(".")
    known = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    if not dot or f".{suffix.lower()}" not in known or is_glob(suffix):
        return pattern
    any_case = "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in suffix)
    return f"{head}.{any_case}"


def globbed_files(pattern: str) -> list[str]:
    """The files ``pattern`` matches (sorted), its image or video suffix in any case
    (:func:`suffix_any_case`), less those in a system folder
    (:data:`~visionkit.data.batch.SYSTEM_FOLDERS`: ``photos/**/*.jpg`` does not read Synology's
    ``@eaDir/1.jpg/SYNOPHOTO_THUMB_M.jpg``) that the pattern does not spell out. Hidden
    folders are glob's: ``*`` and ``**`` match none."""
    spelled = pattern.casefold()
    return [
        match
        for match in sorted(glob.glob(suffix_any_case(pattern), recursive=True))
        if Path(match).is_file()
        and not any(
            system_folder(part) and part.casefold() not in spelled
            for part in Path(match).parts[:-1]
        )
    ]


def is_glob(text: str) -> bool:
    """Whether ``text`` holds a glob wildcard."""
    return any(c in text for c in "*?[")
