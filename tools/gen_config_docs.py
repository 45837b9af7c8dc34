#!/usr/bin/env python
"""Write docs/configs.md, the configuration reference rendered from the schema.

python tools/gen_config_docs.py           # rewrite docs/configs.md
python tools/gen_config_docs.py --check   # exit 1 when docs/configs.md is out of date
"""

import argparse
import sys
from pathlib import Path

from visionkit.config.reference import render_config_reference

TARGET = Path(__file__).resolve().parents[1] / "docs" / "configs.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; write nothing")
    parser.add_argument("--output", type=Path, default=TARGET, help=f"default: {TARGET}")
    args = parser.parse_args()
    text = render_config_reference()
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != text:
            print(f"{args.output} is out of date: run python tools/gen_config_docs.py")
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
