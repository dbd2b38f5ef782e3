"""Declared method options (src/tokenswap/init/registry.py): parsing, did-you-mean, help text."""

from __future__ import annotations

import dataclasses

import pytest

import tokenswap
from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.init import InitContext, NoOptions, get_method, list_methods, register, resolve_options
from tokenswap.init.auxiliary import AuxiliaryOptions
from tokenswap.init.omp import OmpNorm, OmpOptions


def test_unknown_option_is_one_line_with_did_you_mean():
    method = get_method("multivariate")
    with pytest.raises(TokenswapError) as err:
        resolve_options(method, {"multivariate_scal": 1.0})
    assert "did you mean 'multivariate_scale'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(TokenswapError, match="unknown multivariate option 'no_such_option'"):
        resolve_options(method, {"multivariate_scale": 1.0, "no_such_option": 3})


def test_old_and_unprefixed_names_suggest_the_declared_one():
    with pytest.raises(TokenswapError, match=r"unknown omp option 'k' \(did you mean 'omp_k'\?\)"):
        resolve_options(get_method("omp"), {"k": 8})
    with pytest.raises(TokenswapError, match=r"did you mean 'aux_dim'"):
        resolve_options(get_method("focus"), {"focus_dim": 16})


def test_method_without_options_rejects_any():
    assert get_method("mean").options is NoOptions
    with pytest.raises(TokenswapError, match="method 'mean' takes no options"):
        resolve_options(get_method("mean"), {"focus_mix": 0.5})


def test_values_are_parsed_from_strings():
    opts = resolve_options(get_method("omp"), {"omp_k": "8", "omp-mix": "0.5", "omp_positive": "true",
                                               "omp_norm": "mean", "omp_batch": "none"})
    assert opts == OmpOptions(omp_k=8, omp_mix=0.5, omp_positive=True, omp_norm=OmpNorm.MEAN,
                              omp_batch=None)
    assert resolve_options(get_method("omp"), None) == OmpOptions()
    assert resolve_options(get_method("omp"), opts) is opts
    for bad, message in (({"omp_k": "8.5"}, "omp_k must be an integer"),
                         ({"omp_k": "0"}, "omp_k must be at least 1"),
                         ({"omp_mix": "2"}, "omp_mix must be between 0 and 1")):
        with pytest.raises(TokenswapError, match=message):
            resolve_options(get_method("omp"), bad)


def test_every_method_declares_options_with_help_and_why():
    for method in list_methods():
        assert dataclasses.is_dataclass(method.options), method.name
        method.options()  # runs on its defaults alone
        for row in method.describe_options():
            assert row["help"] and row["why"], (method.name, row["name"])


def test_methods_on_the_auxiliary_space_accept_its_options():
    for name in ("focus", "omp"):
        assert issubclass(get_method(name).options, AuxiliaryOptions)
        assert resolve_options(get_method(name), {"aux_dim": "16"}).aux_dim == 16


def test_register_refuses_options_without_help():
    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        speed: float = option(1.0)

    with pytest.raises(ValueError, match=r"options without help text \['speed'\]"):
        register("never-registered", summary="x", options=Undocumented)


def test_context_refuses_a_plain_dict(pair, source_matrix):
    with pytest.raises(TypeError, match="resolve_options"):
        get_method("omp").fn(source_matrix, pair, InitContext(options={"omp_k": 8}))


def test_transfer_checks_options_before_loading_a_model(tmp_path):
    with pytest.raises(TokenswapError, match=r"did you mean 'omp_k'"):
        tokenswap.transfer(str(tmp_path / "no-such-model"), "no-such-tokenizer", method="omp",
                           options={"k": 8})
