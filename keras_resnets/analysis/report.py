"""What every analysis command writes and prints, and the arguments they share.

`python -m keras_resnets.analysis` (the library's commands) and
`python -m training.degradation` (the one that trains through the trainer)
both write `<command>.csv` and `<command>.json` with `write_outputs`, print
`print_table`, and take `add_common_arguments`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os

from keras_resnets.utils import atomic_write_text, int_flag, output_dir_flag, seed_flag

#: Where the commands write when `--output-dir` is not given.
DEFAULT_OUTPUT = os.path.join("runs", "analysis")


def write_outputs(output_dir: str, stem: str, rows: list[dict], payload) -> list[str]:
    """Write `<stem>.csv` (rows) and `<stem>.json` (payload) into `output_dir`.

    Each file is written atomically (`keras_resnets.utils.atomic_write_text`):
    never a half-written file under the final name.

    Args:
        output_dir: the folder (created if needed).
        stem: file name without extension.
        rows: the table, one dict per row (same keys).
        payload: anything JSON-serialisable (the full numbers).

    Returns:
        The two paths written.
    """
    os.makedirs(output_dir, exist_ok=True)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    csv_path = os.path.join(output_dir, f"{stem}.csv")
    json_path = os.path.join(output_dir, f"{stem}.json")
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")
    return [csv_path, json_path]


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Print rows as an aligned text table (floats with 4 significant digits)."""
    if not rows:
        return
    columns = columns or list(rows[0])

    def fmt(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "-" if value is None else str(value)

    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def add_common_arguments(
    parser: argparse.ArgumentParser, *, train: bool = True, epochs: int = 0, size: int = 32
) -> None:
    """Add `--output-dir` and `--seed`, and with `train` the digits-training options.

    Each is typed (`keras_resnets.utils.int_flag`, `output_dir_flag`): a bad
    value stops the command before anything is built, naming the flag (exit 2).

    Args:
        parser: the command's parser.
        train: also add `--image-size` (default `size`), `--epochs` (default
            `epochs`) and `--batch-size` (default 64), for the commands that
            train their models on the digits.
        epochs: the default of `--epochs`.
        size: the default of `--image-size`.
    """
    parser.add_argument(
        "--output-dir",
        type=output_dir_flag,
        default=DEFAULT_OUTPUT,
        help="where to write the files (a directory)",
    )
    parser.add_argument("--seed", type=seed_flag, default=0)
    if train:
        parser.add_argument(
            "--image-size",
            type=int_flag(1),
            default=size,
            help=f"digits resized to this size (default {size}; 8 is their native size)",
        )
        parser.add_argument(
            "--epochs",
            type=int_flag(0),
            default=epochs,
            help=f"short SGD training on digits before measuring (default {epochs})",
        )
        parser.add_argument("--batch-size", type=int_flag(1), default=64)
