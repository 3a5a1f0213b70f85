"""The memory savers of SupernetSearchClassifier: partial channels, checkpointing."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import Callback

from skdarts import SupernetSearchClassifier

FAST = dict(
    init_channels=4,
    n_cells=2,
    n_nodes=2,
    max_epochs=1,
    final_epochs=1,
    batch_size=32,
    verbose=0,
    device="cpu",
    random_state=0,
)


class AlphasAtStart(Callback):
    """Keeps a copy of the architecture parameters as the search starts."""

    def on_train_begin(self, net, **kwargs):
        self.alphas = {
            n: p.detach().clone()
            for n, p in net.module_.named_parameters()
            if n.startswith("alphas_")
        }


@pytest.mark.parametrize(
    "options",
    [dict(partial_channels=2), dict(checkpointing=True)],
    ids=["partial_channels", "checkpointing"],
)
def test_memory_savers_train_and_discretise(digits, options):
    X, y = digits[0][:120], digits[1][:120]
    clf = SupernetSearchClassifier(
        **FAST, **options, callbacks=[("alphas_at_start", AlphasAtStart())]
    ).fit(X, y)
    module = clf.net_.module_
    assert module.partial_channels == options.get("partial_channels", 1)
    assert module.checkpointing == options.get("checkpointing", False)
    assert clf.genotype_.n_nodes == 2
    assert clf.predict(X[:5]).shape == (5,)
    assert np.isfinite(clf.history_[0]["train_loss"])
    if "partial_channels" in options:
        # The edge weights are architecture parameters: the Adam step moved them.
        assert "alphas_edge_normal" in module.state_dict()
        before = dict(clf.net_.callbacks_)["alphas_at_start"].alphas
        # Only the cell types present get gradients (2 cells: both reduce).
        kinds = {"reduce" if cell.reduction else "normal" for cell in module.cells}
        assert kinds
        for name in (f"alphas_edge_{kind}" for kind in kinds):
            after = getattr(module, name).detach().cpu()
            assert not torch.equal(before[name], after), name
        params = {
            id(p) for g in clf.net_.optimizer_arch_.param_groups for p in g["params"]
        }
        assert id(module.alphas_edge_normal) in params


def test_checkpointing_gives_the_same_fit(digits):
    X, y = digits[0][:120], digits[1][:120]
    plain = SupernetSearchClassifier(**FAST).fit(X, y)
    ckpt = clone(plain).set_params(checkpointing=True).fit(X, y)
    assert plain.genotype_ == ckpt.genotype_
    np.testing.assert_allclose(
        plain.predict_proba(X[:10]), ckpt.predict_proba(X[:10]), atol=1e-4
    )


def test_bad_partial_channels(digits):
    X, y = digits[0][:120], digits[1][:120]
    with pytest.raises(ValueError, match="partial_channels"):
        SupernetSearchClassifier(**FAST, partial_channels=0).fit(X, y)
    with pytest.raises(ValueError, match="partial_channels"):
        SupernetSearchClassifier(**FAST, partial_channels=3).fit(X, y)
