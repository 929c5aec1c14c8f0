"""Every recipe key is read by some code path: a key nothing reads fails here.

The config of a real tiny run is wrapped in mappings that record every key
read (`__getitem__`/`get`), then the paths a digits run does not take are
called on the same kind of config: `--list-recipes` (description, paper,
reference error), a transfer from the run's own model (`transfer.*`), and
the TFDS input pipeline (`data.shuffle_buffer`).
"""

from __future__ import annotations

import pytest
from training_helpers import TINY

from training import config as config_lib

pytestmark = pytest.mark.filterwarnings("ignore")


class _Recording(dict):
    """A recipe section that records the dotted keys read from it."""

    reads: set[str] = set()

    def __init__(self, data: dict, schema: dict, prefix: str = ""):
        super().__init__()
        self.prefix = prefix
        for key, value in data.items():
            spec = schema.get(key)
            if isinstance(spec, dict) and isinstance(value, dict):
                value = _Recording(value, spec, f"{prefix}{key}.")
            dict.__setitem__(self, key, value)

    def __getitem__(self, key):
        _Recording.reads.add(self.prefix + str(key))
        return super().__getitem__(key)

    def get(self, key, default=None):
        _Recording.reads.add(self.prefix + str(key))
        return super().get(key, default)


def _recording(cfg: dict) -> _Recording:
    return _Recording(cfg, config_lib.SCHEMA)


def test_every_schema_key_is_read_by_a_code_path(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds
    import yaml
    from test_training_data import _write_folder

    from training import data as data_lib
    from training import runner
    from training import train as train_lib

    _Recording.reads = set()
    # 1. A real tiny run (SGD, so the momentum keys are read too).
    resolve = runner.resolve
    monkeypatch.setattr(runner, "resolve", lambda *a, **k: _recording(resolve(*a, **k)))
    monkeypatch.setitem(
        yaml.SafeDumper.yaml_representers, _Recording, yaml.SafeDumper.represent_dict
    )
    overrides = {**TINY, "optimizer.name": "sgd", "optimizer.clipnorm": 1.0}
    overrides.update({"train.steps_per_epoch": 1, "data.test_subset": 16})
    out = tmp_path / "run"
    result = runner.run(
        "digits_resnet20", epochs=1, output_dir=str(out), overrides=overrides, verbose="quiet"
    )
    assert result["status"] == "completed"
    # 2. The paths a digits run does not take. Transfer from the run's model:
    cfg = resolve(
        "digits_resnet20",
        overrides={"transfer.from": str(out / "model.keras"), "transfer.new_classes": 3},
        freeze_until="stem",
    )
    assert train_lib.build_training_model(_recording(cfg), 3, 3).output_shape == (None, 3)
    # an image folder (data_dir, skip_bad_images) and a TFDS set (shuffle_buffer):
    data = _recording(cfg)["data"]
    data.update(dataset="folder", data_dir=str(_write_folder(tmp_path / "images", bad=False)))
    assert data_lib.load_source(data).num_classes == 2
    data.update(dataset="imagenette", data_dir=None, normalization="imagenet")
    with tfds.testing.mock_data(num_examples=8):
        data_lib.train_dataset(data_lib.load_source(data), data, 4, seed=0)
    # the recipe list (description, paper, reference_error):
    load = config_lib.load_recipe
    monkeypatch.setattr(config_lib, "load_recipe", lambda name: _recording(load(name)))
    assert "digits_resnet20" in train_lib.list_recipes_table()

    unread = sorted({key for key, _ in config_lib.leaves()} - _Recording.reads)
    assert not unread, f"recipe keys no code path reads: {unread}"
