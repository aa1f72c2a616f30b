"""The catalogue against the engine's registries: every name it lists has exactly one implementation."""

import subprocess
import sys

import pytest

from search_engine import catalog
from search_engine.export.formats import FORMATS
from search_engine.expr.losses import BASELINE_TREES, baseline_loss
from search_engine.expr.tree import KNOWN_LOSSES, parse, to_prefix
from search_engine.tasks import datasets, networks
from search_engine.tasks.datasets import vision
from search_engine.tasks.datasets.builtin import BUILTIN_INFO


def test_every_dataset_of_the_catalogue_has_a_loader_and_no_loader_is_unlisted():
    assert tuple(datasets._HANDLERS) == catalog.DATASET_NAMES
    assert set(vision.VISION_SETS) == set(catalog.VISION_DATASETS)
    assert set(BUILTIN_INFO) == set(catalog.BUILTIN_DATASETS)


def test_the_catalogue_kind_of_a_builtin_dataset_is_the_one_its_data_has():
    for name in catalog.BUILTIN_DATASETS:
        assert BUILTIN_INFO[name].kind == catalog.dataset_kind(name)


def test_every_model_of_the_catalogue_has_a_builder_and_no_builder_is_unlisted():
    assert tuple(networks._BUILDERS) == catalog.MODEL_NAMES


def test_every_export_format_renders_and_keeps_the_catalogue_extension():
    assert tuple(FORMATS) == tuple(catalog.EXPORT_FORMATS)
    for name, fmt in FORMATS.items():
        assert fmt.extension == catalog.EXPORT_FORMATS[name].extension


@pytest.mark.parametrize("kind", catalog.KINDS)
def test_each_kind_baseline_is_a_known_loss_tree(kind):
    name = catalog.baseline_name(kind)
    assert to_prefix(KNOWN_LOSSES[name]) == to_prefix(parse(catalog.BASELINES[name]))
    assert BASELINE_TREES[kind] == KNOWN_LOSSES[name]
    assert callable(baseline_loss(kind))
    assert catalog.kind_of_baseline(name) == kind


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="known kinds: classification, regression"):
        catalog.metric_name("ranking")
    with pytest.raises(ValueError, match="expected one of cross_entropy, squared_error"):
        catalog.kind_of_baseline("hinge")


def test_file_datasets_take_their_kind_from_the_configuration():
    assert catalog.dataset_kind("csv", "regression") == "regression"
    assert catalog.dataset_kind("diabetes", "classification") == "regression"


def test_the_catalogue_imports_no_numeric_stack():
    code = "import sys, search_engine.catalog; print(sorted(m for m in ('torch', 'sympy', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
