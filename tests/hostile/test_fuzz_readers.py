"""Property-based fuzzing of every reader of user files: any input parses or raises a RobustXAIError.

Readers: CSV manifests (``read_manifest`` and ``FolderDataset``), every ground-truth format
(``read_annotations``: points CSV, generic and robustxai JSON, COCO, mask PNG folders, YOLO; and the data
folder's own ``annotations.json`` as ``FolderDataset`` loads it), TOML audit configs (``load_config`` and
``check_config``) and saved-model specs (``model.json`` through ``load_model``).

Examples per reader: ``ROBUSTXAI_FUZZ_EXAMPLES`` (default 25, so the suite stays fast; BENCHMARKS.md records
a run with 2,000). Without the variable the examples are derandomised, so CI runs are reproducible.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st
from PIL import Image

import robustxai as rx
from robustxai import RobustXAIError
from robustxai.audit import load_config
from robustxai.audit._config_toml import dump_toml
from robustxai.audit._runner import check_config
from robustxai.data import FolderDataset, read_annotations, read_manifest

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._config_toml, robustxai.audit._runner"

EXAMPLES = int(os.environ.get("ROBUSTXAI_FUZZ_EXAMPLES", "25"))
CAMPAIGN = "ROBUSTXAI_FUZZ_EXAMPLES" in os.environ  # a long run: random seeds, and shrink what it finds
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not CAMPAIGN,
    phases=list(Phase) if CAMPAIGN else [Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
    database=None,
)
IMAGES = ["normal/a.png", "normal/b.png", "fracture/c.png", "fracture/d.png"]
SIZES = {rel: (16, 16) for rel in IMAGES}
NAMES = [
    *IMAGES,
    "a.png",
    "c",
    "fracture/c",
    "normal",
    "../x.png",
    "/abs.png",
    "",
    " ",
    "a.png\\b",
    "n" * 300,
]

pytestmark = pytest.mark.usefixtures("one_thread_fuzz")


@pytest.fixture
def one_thread_fuzz() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def parses_or_refuses(read: Callable[[], Any]) -> None:
    """The property: ``read()`` returns, or raises a RobustXAIError; anything else escapes and fails."""
    with contextlib.suppress(RobustXAIError):
        read()


# ---- value strategies -------------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(NAMES)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
numbers = st.integers(-40, 60) | st.floats(-1e3, 1e3) | st.floats(allow_nan=True, allow_infinity=True)
number_lists = st.lists(numbers, max_size=8)
maybe_bad = number_lists | json_values


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True, default=str)


# ---- a data folder the readers point at -------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 16x16 images in two class folders, and a 16x16 mask (no manifest, no annotations)."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    for rel in [*IMAGES, "masks/normal/a.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / rel)
    return root


def fresh(folder: Path, name: str) -> Path:
    """A scratch copy location inside the module folder, emptied for each example."""
    path = folder / "scratch" / name
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ---- manifests ---------------------------------------------------------------------------------------------

cells = st.sampled_from(
    [*IMAGES, "normal", "fracture", "train", "test", "", "1", "0", "-1", "nan", "2", "x"]
) | st.text(max_size=10)
headers = st.lists(
    st.sampled_from(["path", "Path", "label", "split", "normal", "fracture", "Sex", ""])
    | st.text(max_size=6),
    max_size=5,
)


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    import csv

    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


manifest_texts = st.builds(csv_text, headers, st.lists(st.lists(cells, max_size=5), max_size=6)) | st.text(
    max_size=200
)
manifest_options = st.fixed_dictionaries(
    {
        "class_names": st.none() | st.lists(st.sampled_from(["normal", "fracture", "x", ""]), max_size=3),
        "split": st.none() | st.sampled_from(["train", "test", ""]),
        "uncertain": st.sampled_from(["zero", "one", "ignore", "maybe"]),
        "blank": st.sampled_from(["zero", "uncertain", "nope"]),
    }
)


@FUZZ
@given(text=manifest_texts, options=manifest_options)
def test_fuzz_manifest_text(folder: Path, text: str, options: dict[str, Any]) -> None:
    path = fresh(folder, "manifest.csv")
    path.write_text(text, encoding="utf-8")
    parses_or_refuses(lambda: read_manifest(path, folder, **options))
    shutil.copy(path, folder / "manifest.csv")
    try:
        parses_or_refuses(
            lambda: _load_all(FolderDataset(folder, size=16, class_names=options["class_names"]))
        )
    finally:
        (folder / "manifest.csv").unlink()


@FUZZ
@given(data=st.binary(max_size=200) | manifest_texts.map(lambda t: t.encode("utf-16")))
def test_fuzz_manifest_bytes(folder: Path, data: bytes) -> None:
    path = fresh(folder, "manifest.csv")
    path.write_bytes(data)
    parses_or_refuses(lambda: read_manifest(path, folder))


def _load_all(ds: FolderDataset) -> None:
    for i in range(len(ds)):
        ds[i]


# ---- annotation formats ------------------------------------------------------------------------------------

points_csv = st.builds(
    csv_text,
    st.sampled_from([["image", "x", "y"], ["path", "x", "y"], ["file_name", "y", "x"], ["a", "b"]]) | headers,
    st.lists(
        st.lists(cells | st.sampled_from(["3", "-0.5", "15.5", "1e308", "inf"]), max_size=4), max_size=6
    ),
) | st.text(max_size=120)

robustxai_entries = st.fixed_dictionaries(
    {},
    optional={
        "points": maybe_bad | st.lists(st.lists(numbers, min_size=2, max_size=2), max_size=4),
        "boxes": maybe_bad | st.lists(st.lists(numbers, min_size=4, max_size=4), max_size=3),
        "polygons": maybe_bad | st.lists(number_lists, max_size=3),
        "mask": st.sampled_from(["masks/normal/a.png", "normal/b.png", "missing.png", "", "masks"])
        | json_values,
        "extra": json_values,
    },
)
robustxai_docs = (
    st.fixed_dictionaries(
        {
            "images": st.dictionaries(
                st.sampled_from(NAMES) | st.text(max_size=6), robustxai_entries | json_values, max_size=5
            )
        },
        optional={
            "format": st.sampled_from(["robustxai-annotations/1", "other"]) | json_values,
            "class_names": json_values | st.just(["normal", "fracture"]),
        },
    )
    | json_values
)

coco_images = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers(0, 3) | json_values,
        "file_name": st.sampled_from(NAMES) | json_values,
        "width": st.just(16) | json_values,
        "height": st.just(16) | json_values,
    },
)
coco_annotations = st.fixed_dictionaries(
    {},
    optional={
        "image_id": st.integers(0, 3) | json_values,
        "bbox": st.lists(numbers, min_size=4, max_size=4) | maybe_bad,
        "segmentation": st.lists(number_lists, max_size=2)
        | number_lists
        | st.fixed_dictionaries({"counts": json_values, "size": json_values})
        | json_values,
    },
)
coco_docs = (
    st.fixed_dictionaries(
        {
            "images": st.lists(coco_images | json_values, max_size=4),
            "annotations": st.lists(coco_annotations | json_values, max_size=5),
        }
    )
    | json_values
)

yolo_lines = st.lists(
    st.lists(
        st.sampled_from(["0", "1", "0.5", "0.25", "1.5", "-1", "nan", "inf", "x", ""]) | st.text(max_size=4),
        max_size=9,
    ).map(" ".join),
    max_size=5,
).map("\n".join)


def png_bytes(mode: str, w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 1).save(buf, format="PNG")
    return buf.getvalue()


mask_files = st.builds(
    png_bytes,
    st.sampled_from(["1", "L", "LA", "RGB", "RGBA", "P", "I;16"]),
    st.integers(1, 20),
    st.integers(1, 20),
) | st.binary(max_size=64)
mask_names = st.sampled_from(["normal/a.png", "a.png", "c.png", "fracture/c.png", "zz.png", "normal/a.PNG"])


@FUZZ
@given(text=points_csv)
def test_fuzz_points_csv(folder: Path, text: str) -> None:
    path = fresh(folder, "points.csv")
    path.write_text(text, encoding="utf-8")
    parses_or_refuses(lambda: read_annotations(path, SIZES, fmt="points_csv"))


@FUZZ
@given(doc=robustxai_docs, fmt=st.sampled_from(["json", "robustxai", "auto"]))
def test_fuzz_json_annotations(folder: Path, doc: Any, fmt: str) -> None:
    path = fresh(folder, "ann.json")
    path.write_text(dumps(doc), encoding="utf-8")
    parses_or_refuses(lambda: read_annotations(path, SIZES, fmt=fmt))


@FUZZ
@given(doc=coco_docs)
def test_fuzz_coco(folder: Path, doc: Any) -> None:
    path = fresh(folder, "coco.json")
    path.write_text(dumps(doc), encoding="utf-8")
    parses_or_refuses(lambda: read_annotations(path, SIZES, fmt="coco"))


@FUZZ
@given(files=st.dictionaries(mask_names, mask_files, max_size=3))
def test_fuzz_mask_folder(folder: Path, files: dict[str, bytes]) -> None:
    root = fresh(folder, "masks_dir")
    root.mkdir()
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    parses_or_refuses(lambda: read_annotations(root, SIZES, fmt="mask_png"))


@FUZZ
@given(
    files=st.dictionaries(
        st.sampled_from(["a.txt", "normal/b.txt", "c.txt", "classes.txt", "q.txt"]),
        yolo_lines | st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
        max_size=3,
    )
)
def test_fuzz_yolo(folder: Path, files: dict[str, str]) -> None:
    root = fresh(folder, "yolo_dir")
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    parses_or_refuses(lambda: read_annotations(root, SIZES, fmt="yolo"))


@FUZZ
@given(doc=robustxai_docs)
@example(doc={"format": "robustxai-annotations/1", "class_names": ["normal", "n" * 300], "images": {}})
def test_fuzz_folder_annotations_json(folder: Path, doc: Any) -> None:
    """The data folder's own annotations.json, as FolderDataset reads it and applies it to each image."""
    if isinstance(doc, dict):
        doc.setdefault("format", "robustxai-annotations/1")
    path = folder / "annotations.json"
    path.write_text(dumps(doc), encoding="utf-8")
    try:
        parses_or_refuses(lambda: _load_all(FolderDataset(folder, size=16)))
    finally:
        path.unlink()


# ---- TOML audit configs ------------------------------------------------------------------------------------

SECTIONS: dict[str, list[str]] = {
    "": ["name", "seed", "batch_size", "cache_dir", "colour"],
    "data": ["source", "path", "n_train", "n_test", "size", "shortcut", "channels", "transforms", "manifest"],
    "training": ["epochs", "lr", "eps", "val_fraction"],
    "explain": ["methods", "n_images", "tops", "attacks", "params", "pointing_radius"],
    "report": ["n_figure", "primary_attack", "primary_epsilon"],
    "executor": ["kind", "num_cpus", "device"],
    "sanity": ["enabled", "masking_gap"],
    "manipulation": ["methods", "iterations", "eps", "models"],
}
toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        ["pgd", "fgsm", "saliency", "gradcam", "folder", "synthetic-fracture", "local", "cuda", "highpass"]
    )
    | st.text(string.printable, max_size=8)
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "sigma", "steps", "x"]), inner, max_size=2)
    ),
    max_leaves=6,
)
table_lists = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["pgd", "fgsm", "bim", "m", "deepfool"]) | toml_scalars},
        optional={
            "epsilons": st.lists(toml_scalars, max_size=3),
            "params": st.dictionaries(
                st.sampled_from(["steps", "step_size", "eps", "x"]), toml_scalars, max_size=2
            ),
            "arch": st.sampled_from(["smallcnn", "vit", "torchvision:resnet18"]) | toml_scalars,
            "arch_kwargs": st.dictionaries(
                st.sampled_from(["widths", "checkpoint", "x"]), toml_values, max_size=2
            ),
            "training": st.sampled_from(["standard", "pgd", "none"]) | toml_scalars,
            "checkpoint": st.text(max_size=6),
        },
    ),
    max_size=2,
)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for section, keys in SECTIONS.items():
        if not draw(st.booleans()):
            continue
        table = {k: draw(toml_values) for k in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))}
        if section:
            doc[section] = table
        else:
            doc.update(table)
    if draw(st.booleans()):
        doc["attacks"] = draw(table_lists)
    if draw(st.booleans()):
        doc["models"] = draw(table_lists)
    return doc


def _toml(doc: dict[str, Any]) -> str:
    try:
        return dump_toml(doc)
    except TypeError:
        return "x = 1"


toml_texts = (
    st.builds(_toml, configs())
    | st.text(max_size=120)
    | st.binary(max_size=60).map(lambda b: b.decode("latin-1"))
)


@FUZZ
@given(text=toml_texts, raw=st.booleans())
def test_fuzz_toml_config(folder: Path, text: str, raw: bool) -> None:
    path = fresh(folder, "c.toml")
    if raw:
        path.write_bytes(text.encode("latin-1", errors="replace"))
    else:
        path.write_text(text, encoding="utf-8")

    def read() -> None:
        cfg = load_config(path, profile="smoke")
        check_config(cfg)

    parses_or_refuses(read)


# ---- saved-model specs (model.json) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_model")
    torch.manual_seed(0)
    rx.save_model(
        rx.create_model("smallcnn", widths=(4, 8, 8, 8), class_names=["normal", "fracture"]), root / "m"
    )
    return root / "m"


small_ints = st.integers(-2, 12)
spec_kwargs = st.dictionaries(
    st.sampled_from(
        [
            "num_classes",
            "class_names",
            "in_channels",
            "widths",
            "dropout",
            "task",
            "mean",
            "std",
            "head",
            "colour",
        ]
    ),
    small_ints
    | st.lists(small_ints, max_size=5)
    | st.sampled_from(["multiclass", "multilabel", "linear", ["a", "b"], ["a", "b", "c"], 0.5])
    | json_values.filter(lambda v: not isinstance(v, int | float) or abs(v) < 64),
    max_size=4,
)
spec_docs = (
    st.fixed_dictionaries(
        {
            "format": st.just("robustxai-model/1") | json_values,
            "spec": st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["smallcnn", "smallcnn-attention", "nope", "torchvision:"])
                    | json_values
                },
                optional={"kwargs": spec_kwargs | json_values},
            )
            | json_values,
        },
        optional={"meta": json_values},
    )
    | json_values
)


def _bounded(doc: Any) -> bool:
    """Skip specs that would ask for giant layers (a separate resource limit, not a parsing question)."""
    text = dumps(doc)
    return all(abs(v) < 64 for v in _ints(doc)) and len(text) < 4000


def _ints(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _ints(v)
    elif isinstance(value, list):
        for v in value:
            yield from _ints(v)


@FUZZ
@given(doc=spec_docs.filter(_bounded) | st.text(max_size=60))
def test_fuzz_model_spec(saved_model: Path, doc: Any) -> None:
    spec = saved_model / "model.json"
    original = spec.read_bytes()
    spec.write_text(doc if isinstance(doc, str) else dumps(doc), encoding="utf-8")
    try:
        parses_or_refuses(lambda: rx.load_model(saved_model))
    finally:
        spec.write_bytes(original)
