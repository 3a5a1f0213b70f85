"""Rebuilding the head of a warm-started supernet: a linear probe.

After a warm start the body carries the prior's features but the head is new
and random. Trained by SGD alongside the body, a random head needs many steps
(on small targets, many epochs) before the accuracy reflects what the body
already knows, and meanwhile its large gradients disturb the body. A linear
probe fixes the head first, at the cost of about one forward pass over the
weight split:

1. **Batch-norm recalibration** (AdaBN): the running statistics are
   recomputed on the target (the prior's describe its source data).
2. **Logistic regression** on the body's pooled features, in evaluation
   mode: its coefficients become the head's weights.

The search then starts from a head that already fits the target, and the
body's learning rate can stay low (it refines rather than rebuilds).

References
----------
.. [1] Y. Li et al. "Revisiting Batch Normalization For Practical Domain
   Adaptation" (AdaBN). ICLR workshop 2017.
.. [2] A. Kumar et al. "Fine-Tuning can Distort Pretrained Features and
   Underperform Out-of-Distribution" (LP-FT: linear probe, then fine-tune).
   ICLR 2022.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.dataset import unpack_data

from .contracts import unwrap_supernet

__all__ = ["HeadProbe"]


class HeadProbe(Callback):
    """skorch callback: recalibrate batch norm and fit the head before training.

    Runs once, at the start of a fresh fit (not when a checkpointed search
    resumes), on the training data the net is fitted on (the weight split).
    Records the seconds it took as ``probe_seconds`` and the probe's
    training accuracy as ``probe_acc`` in the first epoch's history row.

    Parameters
    ----------
    C : float, default=1.0
        Inverse L2 strength of the logistic regression.
    adabn : bool, default=True
        Recompute the batch-norm running statistics on the target first.
    max_iter : int, default=200
        Iterations of the logistic regression's solver.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdarts import SupernetSearchClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = SupernetSearchClassifier(init_channels=2, n_cells=1, n_nodes=1,
    ...     max_epochs=1, final_epochs=0, verbose=0, random_state=0,
    ...     callbacks=[("probe", HeadProbe())]).fit(X[:100], y[:100])
    >>> 0 <= clf.net_.history[0, "probe_acc"] <= 1
    True
    """

    def __init__(self, C: float = 1.0, adabn: bool = True, max_iter: int = 200):
        self.C = C
        self.adabn = adabn
        self.max_iter = max_iter

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self._pending = None
        if len(net.history) > 0 or X is None:
            return  # a resumed search keeps the head it had
        t0 = time.perf_counter()
        module = unwrap_supernet(net)  # DDP would hide the supernet's API
        # Inputs go where the module is: an accelerated net has device=None.
        param = next(module.parameters(), None)
        device = param.device if param is not None else net.device
        dataset = net.get_dataset(X, y)

        # skorch's plain loader: every process sees the whole weight split (an
        # accelerated loader shards it, so each process would fit its own
        # head) and batches stay on the CPU until moved.
        def batches():
            return NeuralNet.get_iterator(net, dataset, training=False)

        norms = [
            m
            for m in module.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        was_training = module.training
        try:
            with torch.no_grad():
                if self.adabn and norms:
                    momenta = [m.momentum for m in norms]
                    for m in norms:
                        m.reset_running_stats()
                    module.train()
                    try:
                        for k, batch in enumerate(batches()):
                            # Momentum 1/(k+1) makes the running statistics the
                            # average over the batches seen so far.
                            for m in norms:
                                m.momentum = 1.0 / (k + 1)
                            xb, _ = unpack_data(batch)
                            module.features(xb.to(device))
                    finally:
                        for m, momentum in zip(norms, momenta):
                            m.momentum = momentum
                module.eval()
                feats, labels = [], []
                for batch in batches():
                    xb, yb = unpack_data(batch)
                    feats.append(module.features(xb.to(device)).cpu().numpy())
                    labels.append(np.asarray(yb.cpu() if hasattr(yb, "cpu") else yb))
        finally:
            module.train(was_training)
        feats = np.concatenate(feats).astype(np.float64)
        labels = np.concatenate(labels)
        if np.unique(labels).size < 2:
            return  # nothing a classifier could learn; keep the random head
        probe = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(feats, labels)
        head = module.head
        weight = np.zeros((head.out_features, feats.shape[1]), dtype=np.float32)
        bias = np.zeros(head.out_features, dtype=np.float32)
        classes = probe.classes_.astype(int)
        if probe.coef_.shape[0] == 1:  # binary: one row for classes_[1]
            weight[classes[1]] = probe.coef_[0]
            bias[classes[1]] = probe.intercept_[0]
        else:
            weight[classes] = probe.coef_
            bias[classes] = probe.intercept_
        # Classes the weight split lacks keep a large negative bias.
        absent = np.setdiff1d(np.arange(head.out_features), classes)
        if absent.size:
            bias[absent] = bias[classes].min() - 10.0
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(weight))
            head.bias.copy_(torch.from_numpy(bias))
        self._pending = {
            "probe_seconds": time.perf_counter() - t0,
            "probe_acc": float(probe.score(feats, labels)),
        }

    def on_epoch_end(self, net, **kwargs):
        if getattr(self, "_pending", None):
            for key, value in self._pending.items():
                net.history.record(key, value)
            self._pending = None
