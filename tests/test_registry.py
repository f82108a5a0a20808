"""One registry of methods and data modules: what the package exports, the tests list and the
docs describe."""

from __future__ import annotations

from pathlib import Path

import pytest

import ln_lightning
from ln_lightning import registry
from ln_lightning.registry import (
    get_datamodule,
    get_method,
    get_strategy,
    list_datamodules,
    list_methods,
    list_strategies,
    register_method,
    registered,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_method_strategy_and_data_module_is_exported_under_its_class_name():
    packages = (
        ("method", ln_lightning.losses),
        ("strategy", ln_lightning.strategies),
        ("datamodule", ln_lightning.data),
    )
    for kind, package in packages:
        for entry in registered(kind):
            assert getattr(ln_lightning, entry.cls.__name__) is entry.cls
            assert getattr(package, entry.cls.__name__) is entry.cls
            assert (
                entry.cls.__name__ in package.__all__ and entry.cls.__name__ in ln_lightning.__all__
            )


def test_the_methods_are_the_papers_baselines_and_ln():
    papers = ["ce", "ls", "gce", "nan", "forward", "het", "het_tau", "het_tau_full", "ln"]
    assert list_methods() == sorted([*papers, "sgn", "forward_ln"])  # SGN, the successor; LN + T
    assert "digits" in list_datamodules() and "image_folder" in list_datamodules()


def test_the_strategies_are_the_fields():
    assert list_strategies() == ["coteaching", "dividemix", "elr", "forward_or_coteaching", "sop"]
    assert get_strategy("elr").cls is ln_lightning.ELR
    assert ln_lightning.TrainingStrategy is ln_lightning.strategies.TrainingStrategy


@pytest.mark.parametrize("kind", ["method", "strategy", "datamodule"])
def test_every_entry_has_its_config_and_a_quick_example(kind):
    for entry in registered(kind):
        if entry.config is not None:
            assert (ROOT / entry.config).is_file(), (entry.name, entry.config)
        if kind == "method":
            assert isinstance(entry.build(), ln_lightning.NoisyLabelLoss)
        if kind == "strategy":
            assert isinstance(entry.build(), ln_lightning.TrainingStrategy)
            assert entry.config is not None
        if kind != "datamodule":
            assert entry.summary, f"{entry.name}: its class needs a docstring"


def test_a_name_that_is_not_registered_says_the_closest():
    with pytest.raises(
        ValueError, match=r"no method is registered as 'het_taw'\. Did you mean 'het_tau'\?"
    ):
        get_method("het_taw")
    with pytest.raises(ValueError, match=r"Did you mean 'digits'\?"):
        get_datamodule("digit")
    with pytest.raises(ValueError, match="kind must be one of"):
        registered("backbone")


def test_a_name_is_registered_once(monkeypatch):
    monkeypatch.setitem(registry._ENTRIES, "method", dict(registry._ENTRIES["method"]))

    with pytest.raises(ValueError, match=r"the method name 'ce' is taken by CrossEntropy"):

        @register_method("ce")
        class MyCE(ln_lightning.CrossEntropy):
            """Another CE."""

    @register_method("my_ce", config=None)
    class MyOtherCE(ln_lightning.CrossEntropy):
        """Mine."""

    assert "my_ce" in list_methods() and get_method("my_ce").cls is MyOtherCE
