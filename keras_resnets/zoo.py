"""Print the model zoo table, or write it into a Markdown file between markers.

    python -m keras_resnets.zoo                  # print the table
    python -m keras_resnets.zoo --write README.md docs/models.md

The table sits between `<!-- models:start -->` and `<!-- models:end -->`;
`tests/test_docs.py` checks the committed files match the registry.
"""

from __future__ import annotations

import argparse
import sys

START = "<!-- models:start -->"
END = "<!-- models:end -->"


def render_into(text: str, table: str) -> str:
    """Replace the block between the markers in `text` with `table`."""
    if START not in text or END not in text:
        raise ValueError(f"the markers {START} and {END} are missing")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    from keras_resnets import model_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", nargs="*", default=None, help="Markdown files to update")
    args = parser.parse_args(argv)
    table = model_table()
    if args.write is None:
        print(table)
        return 0
    for path in args.write:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            new = render_into(text, table)
        except ValueError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 1
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
