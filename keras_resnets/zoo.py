"""Print the model zoo table, or write the generated tables into Markdown files.

    python -m keras_resnets.zoo                  # print the model table
    python -m keras_resnets.zoo --write README.md docs/models.md docs/pretrained.md

The model table sits between `<!-- models:start -->` and `<!-- models:end -->`,
the pretrained checkpoints' table (`keras_resnets.weights.pretrained.pretrained_table`)
between `<!-- pretrained:start -->` and `<!-- pretrained:end -->`; `--write`
fills each table whose markers a file has. `tests/test_docs.py` and
`tests/test_timm_tags.py` check the committed files match the registries.
"""

from __future__ import annotations

import argparse
import sys

START = "<!-- models:start -->"
END = "<!-- models:end -->"


def render_into(text: str, table: str, name: str = "models") -> str:
    """Replace the block between the `<!-- {name}:start/end -->` markers in `text` with `table`."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"the markers {start} and {end} are missing")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{table}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    from keras_resnets import model_table
    from keras_resnets.weights.pretrained import pretrained_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", nargs="*", default=None, help="Markdown files to update")
    args = parser.parse_args(argv)
    if args.write is None:
        print(model_table())
        return 0
    tables = {"models": model_table, "pretrained": pretrained_table}
    for path in args.write:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        present = [name for name in tables if f"<!-- {name}:start -->" in text]
        if not present:
            print(f"{path}: the markers {START} and {END} are missing", file=sys.stderr)
            return 1
        new = text
        for name in present:
            new = render_into(new, tables[name](), name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
