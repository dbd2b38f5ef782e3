"""The default of ``hypernet_exact`` (src/tokenswap/init/hypernet.py). The method's other tests
are in tests/hypernet/test_init_hypernet.py."""

from __future__ import annotations

import pytest
import torch
from conftest import HYPERNET_SMALL

from tokenswap.hypernet.model import Hypernet, SourceEmbeddings
from tokenswap.init import InitContext, get_method, resolve_options
from tokenswap.init.hypernet import ExactMode, HypernetOptions

pytestmark = pytest.mark.usefixtures("one_thread")


def test_default_exact_mode_is_align(pair, source_matrix):
    hn = Hypernet.for_source(SourceEmbeddings(source_matrix), **HYPERNET_SMALL)
    torch.nn.init.normal_(hn.input_head[-1].weight, std=0.05)
    with torch.no_grad():  # a common offset on every row: the three modes then all differ
        hn.input_head[-1].bias.fill_(3.0)

    def run(options) -> torch.Tensor:
        return get_method("hypernet").fn(source_matrix, pair,
                                         InitContext(hypernet=hn, options=options)).matrix

    by_mode = {mode: run(HypernetOptions(mode)) for mode in ExactMode}
    for defaults in (None, resolve_options(get_method("hypernet"), {})):
        default = run(defaults)
        assert torch.equal(default, by_mode[ExactMode.ALIGN])
        assert not torch.allclose(default, by_mode[ExactMode.PREDICT])
        assert not torch.allclose(default, by_mode[ExactMode.COPY])
