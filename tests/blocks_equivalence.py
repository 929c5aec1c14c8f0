"""Check that a refactor of the blocks keeps every model the same network.

Usage, from the repository root::

    git stash  # or check out the commit before the change
    PYTHONPATH=$PWD python tests/blocks_equivalence.py save
    git stash pop
    PYTHONPATH=$PWD python tests/blocks_equivalence.py compare   # exit status 1 on a difference

`save` builds one small model per family, residual unit, shortcut option and
variant, ResNeXt form, stochastic depth and dropout setting, plus every
registered model that is not marked slow, fills each weight from a seed
derived from its layer name (so the order of creation does not matter), and
stores the layer names in order, the weight shapes, the parameter count and
the inference output on a fixed input under `$BLOCKS_EQUIVALENCE_DIR`
(default /tmp/blocks_equiv/ref). `compare` rebuilds them and reports any
difference: names, shapes, counts, or an output further than 1e-6 away.
Extra arguments restrict the run to the named cases.
"""

import json
import os
import sys
import zlib

import keras
import numpy as np

import keras_resnets as k
from keras_resnets import blocks, unit_gradients
from keras_resnets.models.registry import model_info
from keras_resnets.utils import iter_layers

OUT = os.environ.get("BLOCKS_EQUIVALENCE_DIR", "/tmp/blocks_equiv/ref")
S = (16, 16, 3)
CASES = {}
for unit in blocks.UNITS:
    for variant in blocks.SHORTCUT_VARIANTS:
        CASES[f"r20_{unit}_{variant}"] = lambda u=unit, v=variant: k.ResNet20(
            input_shape=S, unit=u, shortcut_variant=v
        )
    CASES[f"r20_{unit}_sd"] = lambda u=unit: k.ResNet20(input_shape=S, unit=u, drop_path_rate=0.2)
    CASES[f"stack_{unit}"] = lambda u=unit: unit_gradients.unit_stack(3, unit=u)
    CASES[f"stack_{unit}_plain"] = lambda u=unit: unit_gradients.unit_stack(
        3, unit=u, residual=False
    )
for sc in blocks.SHORTCUTS:
    CASES[f"r20_{sc}"] = lambda s=sc: k.ResNet20(input_shape=S, shortcut=s)
    CASES[f"r20_pre_{sc}"] = lambda s=sc: k.ResNet20(
        input_shape=S, shortcut=s, unit="full_preactivation"
    )
CASES["r18"] = lambda: k.ResNet18(input_shape=(32, 32, 3))
CASES["r18_pre"] = lambda: k.ResNet18(input_shape=(32, 32, 3), unit="full_preactivation")
CASES["r50_s1x1"] = lambda: k.ResNet50(input_shape=(32, 32, 3), stride_in_1x1=True)
CASES["r50_sd"] = lambda: k.ResNet50(input_shape=(32, 32, 3), drop_path_rate=0.1)
CASES["r50v2"] = lambda: k.ResNet50V2(input_shape=(32, 32, 3))
CASES["plain20"] = lambda: k.Plain20(input_shape=S)
CASES["plain18"] = lambda: k.Plain18(input_shape=(32, 32, 3))
CASES["cifar164ish"] = lambda: k.CifarResNet(
    20, block="bottleneck", unit="full_preactivation", input_shape=S
)
CASES["cifar_bneck_orig"] = lambda: k.CifarResNet(20, block="bottleneck", input_shape=S)
for form in "abc":
    CASES[f"resnext_{form}"] = lambda f=form: k.CifarResNeXt(
        depth=11, cardinality=2, base_width=4, form=f, input_shape=S
    )
    CASES[f"resnext_{form}_s1x1"] = lambda f=form: k.CifarResNeXt(
        depth=11, cardinality=2, base_width=4, form=f, stride_in_1x1=True, input_shape=S
    )
CASES["resnext_c_sd"] = lambda: k.CifarResNeXt(
    depth=11, cardinality=2, base_width=4, drop_path_rate=0.2, input_shape=S
)
CASES["resnext_pre_c"] = lambda: k.CifarResNeXt(
    depth=11, cardinality=2, base_width=4, unit="full_preactivation", input_shape=S
)
CASES["resnext50"] = lambda: k.ResNeXt50(input_shape=(32, 32, 3))
CASES["cdensenet"] = lambda: k.CifarDenseNet(depth=16, growth_rate=4, input_shape=S)
CASES["cdensenet_nobc"] = lambda: k.CifarDenseNet(
    depth=13, growth_rate=4, bottleneck=False, compression=1.0, dropout=0.2, input_shape=S
)
CASES["densenet121"] = lambda: k.DenseNet121(input_shape=(32, 32, 3), dropout=0.2)
CASES["wrn"] = lambda: k.WideResNet(10, 2, input_shape=S)
CASES["wrn_drop"] = lambda: k.WideResNet(16, 2, dropout_rate=0.3, input_shape=S)
CASES["wrn_drop_sd"] = lambda: k.WideResNet(
    16, 2, dropout_rate=0.3, drop_path_rate=0.3, input_shape=S
)
CASES["highway"] = lambda: k.CifarHighwayNet(depth=11, input_shape=S)
CASES["highway_unc_proj"] = lambda: k.CifarHighwayNet(
    depth=11, coupled=False, shortcut="projection", input_shape=S
)
CASES["highway19"] = lambda: k.HighwayNet19(input_shape=S)
for _name in k.list_models():
    if not model_info(_name).slow:
        CASES[f"registry_{_name}"] = lambda n=_name: k.get_model(n, input_shape=(32, 32, 3))


def fill(model):
    for layer in iter_layers(model):
        ws = layer.weights
        if not ws or isinstance(layer, keras.Model):
            continue
        vals = []
        for i, w in enumerate(ws):
            rng = np.random.default_rng(zlib.crc32(f"{layer.name}/{i}".encode()))
            shape = tuple(w.shape)
            if "moving_variance" in w.path or "variance" in w.name:
                v = rng.uniform(0.5, 1.5, shape)
            elif len(shape) >= 2:
                fan = np.prod(shape[:-1])
                v = rng.normal(size=shape) / np.sqrt(fan)
            else:
                v = rng.normal(size=shape) * 0.2 + (1.0 if "gamma" in w.path else 0.0)
            vals.append(v.astype("float32"))
        layer.set_weights(vals)


def describe(model):
    names = [layer.name for layer in iter_layers(model)]
    shapes = {
        layer.name: [list(w.shape) for w in layer.weights]
        for layer in iter_layers(model)
        if not isinstance(layer, keras.Model)
    }
    return names, shapes


def main(mode, only=None):
    os.makedirs(OUT, exist_ok=True)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    x32 = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    bad = 0
    for key, make in CASES.items():
        if only and key not in only:
            continue
        keras.utils.clear_session()
        model = make()
        fill(model)
        inp = model.inputs[0].shape
        xx = {16: x, 32: x32}.get(inp[1], None)
        if xx is None:
            xx = np.random.default_rng(0).normal(size=(2, *inp[1:])).astype("float32")
        y = np.asarray(model(xx, training=False))
        names, shapes = describe(model)
        info = dict(names=names, shapes=shapes, count=int(model.count_params()))
        if mode == "save":
            np.save(f"{OUT}/{key}.npy", y)
            json.dump(info, open(f"{OUT}/{key}.json", "w"))
            print("saved", key, y.shape, info["count"], flush=True)
        else:
            ref = json.load(open(f"{OUT}/{key}.json"))
            yref = np.load(f"{OUT}/{key}.npy")
            problems = []
            if ref["names"] != names:
                a, b = set(ref["names"]), set(names)
                problems.append(
                    f"names differ: -{sorted(a - b)[:8]} +{sorted(b - a)[:8]} order_same={sorted(ref['names']) == sorted(names)}"
                )
            if ref["shapes"] != shapes:
                problems.append("shapes differ")
            if ref["count"] != info["count"]:
                problems.append(f"count {ref['count']} -> {info['count']}")
            d = float(np.max(np.abs(yref - y)))
            if not d <= 1e-6:
                problems.append(f"max |dy| = {d}")
            bad += bool(problems)
            print("OK  " if not problems else "FAIL", key, "; ".join(problems), flush=True)
    if mode == "compare":
        print("failures:", bad)
        sys.exit(bool(bad))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or None)
