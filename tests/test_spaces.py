"""Search spaces (skdarts.spaces): operations per edge, RobustDARTS S1-S4, Genotype."""

import pytest

from skdarts import Genotype, Supernet
from skdarts.spaces import DARTS_OPS, SEARCH_SPACES, get_search_space, n_edges


def test_darts_space_has_the_eight_operations():
    space = get_search_space("darts")
    assert space.normal == DARTS_OPS
    assert len(space.edge_ops("normal", 4)) == 14
    assert len(space.edge_ops("normal", 3)) == n_edges(3) == 9


def test_s1_is_per_edge_with_two_operations_and_fixed_size():
    s1 = get_search_space("s1")
    normal, reduce = s1.edge_ops("normal", 4), s1.edge_ops("reduce", 4)
    assert len(normal) == len(reduce) == 14
    assert all(len(e) == 2 for e in normal + reduce)
    # spot checks against the published lists (RobustDARTS primitives_1)
    assert normal[0] == ("skip_connect", "dil_conv_3x3")
    assert normal[13] == ("dil_conv_3x3", "dil_conv_5x5")
    assert reduce[0] == ("max_pool_3x3", "avg_pool_3x3")
    assert reduce[6] == ("max_pool_3x3", "sep_conv_3x3")
    with pytest.raises(ValueError, match="n_nodes=4"):
        s1.edge_ops("normal", 3)


@pytest.mark.parametrize(
    "name, ops",
    [
        ("s2", ("skip_connect", "sep_conv_3x3")),
        ("s3", ("none", "skip_connect", "sep_conv_3x3")),
        ("s4", ("noise", "sep_conv_3x3")),
    ],
)
def test_robustdarts_uniform_spaces(name, ops):
    assert SEARCH_SPACES[name].edge_ops("reduce", 4)[5] == ops


def test_unknown_space_names_the_accepted_ones():
    with pytest.raises(ValueError, match="s1"):
        get_search_space("nasbench")


def test_genotype_json_round_trip_and_validation():
    sn = Supernet("darts", 1, 3, init_channels=4, n_cells=3, n_nodes=3)
    g = sn.genotype()
    again = Genotype.from_json(g.to_json())
    assert again == g
    assert again.n_nodes == 3
    with pytest.raises(ValueError, match="input"):
        Genotype(
            normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 5)],
            normal_concat=[2],
            reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)],
            reduce_concat=[2],
        )
    with pytest.raises(ValueError, match="unknown operation"):
        Genotype.from_dict(g.to_dict() | {"normal": [["conv_7x7", 0]] * 6})
