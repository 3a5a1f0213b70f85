"""The classifier's two trainings: the search, then the derived network."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import EarlyStopping, LRScheduler, ProgressBar
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import Subset

from ..data import StandardisedDataset
from ..search import (
    AcceleratedNeuralNetClassifier,
    AcceleratedSearchNet,
    BatchProgress,
    FiniteGuard,
    GenotypeRecorder,
    HeadProbe,
    SearchConfig,
    SearchNet,
    StablePrintLog,
    build_search_net,
    completed_epochs,
    fit_or_resume,
    portable_getstate,
)
from ..supernet import DerivedNetwork, Supernet
from ._prior import resolve_prior

__all__ = ["SearchTraining"]


def _shared_rng(rng: np.random.RandomState) -> np.random.RandomState:
    """Process 0's generator on every process (same split, same initialisation).

    With several Accelerate processes each runs ``fit``; with
    ``random_state=None`` they would otherwise split the data differently.
    """
    from accelerate.utils import broadcast_object_list

    (seed,) = broadcast_object_list([int(rng.randint(np.iinfo(np.int32).max))])
    return np.random.RandomState(seed)


class _FinalNet(NeuralNetClassifier):
    """The derived network's trainer; pickles so that it loads without CUDA."""

    def __getstate__(self):
        return portable_getstate(self, super().__getstate__)


class SearchTraining:
    """Search and final training of :class:`~skdarts.SupernetSearchClassifier`."""

    def _search_config(self) -> SearchConfig:
        """This estimator's search parameters."""
        return SearchConfig.from_params(self.get_params(deep=False))

    def _loader_params(self) -> dict:
        """DataLoader settings of every skorch net (training, arch split, predict)."""
        return {
            "iterator_train__num_workers": self.num_workers,
            "iterator_valid__num_workers": self.num_workers,
        }

    # -- the supernet to start from ---------------------------------------------

    def _initial_module(self, n_classes: int, handed_prior=None) -> Supernet:
        """The supernet the search starts from.

        ``warm_start=False``: fresh. ``True``: this estimator's last supernet.
        ``"auto"``: the prior handed over by a pipeline step (an
        ``OTSourceSelector``) when there is one, else fresh. Anything else is
        a prior resolved by :func:`._prior.resolve_prior`.
        """
        fresh = self._search_config().make_supernet(self.image_shape_[0], n_classes)
        self.source_ = None
        if self.warm_start is False or (
            isinstance(self.warm_start, str)
            and self.warm_start == "auto"
            and handed_prior is None
        ):
            return fresh
        if self.warm_start is True:
            previous = self._warm_module
            if previous is None:
                return fresh
            if previous.config() | {"n_classes": n_classes} != fresh.config():
                raise ValueError(
                    "warm_start=True continues the previous fit, but the supernet "
                    f"configuration changed from {previous.config()} to "
                    f"{fresh.config()}; set warm_start=False to search from scratch."
                )
            module = copy.deepcopy(previous).cpu()
            module.checkpointing = bool(self.checkpointing)
            if module.n_classes != n_classes:
                module.reset_head(n_classes)
            self.source_ = {"kind": "previous_fit"}
            return module
        auto = isinstance(self.warm_start, str) and self.warm_start == "auto"
        prior = handed_prior if auto else self.warm_start  # other str: a path
        module, self.source_ = resolve_prior(prior, fresh)
        return module

    # -- fitting --------------------------------------------------------------

    def _callbacks(self, checkpoint=None):
        """The search's callbacks after its learning-rate scheduler."""
        cbs = [("genotype_recorder", GenotypeRecorder())]
        if self.source_ is not None and self.warm_head == "probe":
            cbs.append(("head_probe", HeadProbe()))
        if checkpoint is not None:
            # After the scheduler: the saved state includes this epoch's step.
            cbs.append(("search_checkpoint", checkpoint))
        cbs.extend(self._progress_callbacks())
        for i, cb in enumerate(copy.deepcopy(self.callbacks) or []):
            cbs.append(cb if isinstance(cb, tuple) else (f"user_{i}", cb))
        return cbs

    def _progress_callbacks(self) -> list:
        """Per-batch progress: always at verbose >= 2, for long epochs at 1."""
        if self.verbose >= 2:
            return [("progress_bar", ProgressBar())]
        if self.verbose >= 1:
            return [("progress_bar", BatchProgress())]
        return []

    def _announce(self, phase: str) -> None:
        """A line naming the phase above its epoch table (verbose >= 1)."""
        main = self.accelerator is None or self.accelerator.is_main_process
        if self.verbose >= 1 and main:
            print(phase, flush=True)

    def _search_phase(self) -> str:
        source = self.source_
        if source is None:
            return "search from scratch"
        if source.get("name"):
            return f"warm search from {source['name']}"
        return {
            "previous_fit": "warm search from the previous fit",
            "estimator": f"warm search from a fitted {source.get('estimator')}",
        }.get(source.get("kind"), "warm search from a supernet")

    def _search(self, images, y_enc, w_idx, a_idx, handed_prior, checkpoint, state):
        module = self._initial_module(len(self.classes_), handed_prior)
        if isinstance(images, StandardisedDataset):
            images.labels = y_enc
            dataset = images
        else:
            dataset = Dataset(images, y_enc)
        arch_ds = Subset(dataset, a_idx)
        self.net_ = build_search_net(
            self._search_config(),
            module,
            train_split=predefined_split(arch_ds),
            callbacks=self._callbacks(checkpoint),
            classes=np.arange(len(self.classes_)),
            net_class=self._net_class(SearchNet, AcceleratedSearchNet),
            iterator_train__shuffle=True,
            verbose=int(self.verbose >= 1),
            # arch_loss is missing while a warm search holds the alphas still.
            callbacks__print_log=StablePrintLog(
                keys_ignored=["genotype", "arch_weights"], columns=["arch_loss"]
            ),
            **self._net_device_kwargs(),
            **self._loader_params(),
        )
        if self.source_ is not None:
            self.net_.set_params(**self._warm_search_params())
        Xw, yw = Subset(dataset, w_idx), None
        resumed = "" if state is None else f", resumed at epoch {state['epochs_done']}"
        self._announce(self._search_phase() + resumed)
        self.resumed_from_ = fit_or_resume(self.net_, Xw, yw, state, self.max_epochs)
        # The arch split is data, not model state: keep it out of pickles.
        self.net_.train_split = None
        self.search_epochs_ = completed_epochs(self.net_.history)
        self.interrupted_ = self.search_epochs_ < self.max_epochs and not any(
            isinstance(cb, EarlyStopping) and cb.misses_ >= cb.patience
            for _, cb in self.net_.callbacks_
        )
        self.genotype_ = self.net_.module_.genotype()
        self.final_net_ = None
        if self.interrupted_:
            resume = (
                " fit again with the same checkpoint_dir to resume from the last "
                "checkpoint."
                if self.checkpoint_dir is not None
                else " set checkpoint_dir to make searches resumable."
            )
            warnings.warn(
                f"The search was interrupted after {self.search_epochs_} of "
                f"{self.max_epochs} epochs: the genotype is derived from the alphas "
                "as they stood, the final training is skipped and predictions come "
                f"from the supernet (interrupted_=True);{resume}",
                UserWarning,
                stacklevel=4,
            )
        elif self.final_epochs > 0:
            self.final_net_ = self._fit_final(dataset, None)
            done = completed_epochs(self.final_net_.history)
            if done < self.final_epochs:
                self.interrupted_ = True
                warnings.warn(
                    f"The final training was interrupted after {done} of "
                    f"{self.final_epochs} epochs; predictions use the derived "
                    "network as trained so far (interrupted_=True).",
                    UserWarning,
                    stacklevel=4,
                )

    def _net_class(self, plain, accelerated):
        return plain if self.accelerator is None else accelerated

    def _net_device_kwargs(self) -> dict:
        if self.accelerator is None:
            return {"device": self.device_}
        # The accelerator places data and modules itself (skorch: device=None).
        return {"device": None, "accelerator": self.accelerator}

    def _warm_search_params(self) -> dict:
        """SearchNet settings of a warm-started search (see the warm_* params)."""
        lr = self.warm_lr if self.warm_lr is not None else self.lr
        return {
            "optimizer__lr": lr,
            "optimizer__param_groups": [("head.*", {"lr": self.lr})],
            "arch_warmup_epochs": self.warm_arch_warmup_epochs,
            "epsilon_start": (
                self.epsilon
                if self.warm_epsilon_start is None
                else self.warm_epsilon_start
            ),
        }

    def _fit_final(self, images, y_enc):
        derived = DerivedNetwork.from_supernet(self.net_.module_, self.genotype_)
        net = self._net_class(_FinalNet, AcceleratedNeuralNetClassifier)(
            module=derived,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.SGD,
            optimizer__lr=self.lr,
            optimizer__momentum=self.momentum,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=self.final_epochs,
            batch_size=self.batch_size,
            train_split=None,
            iterator_train__shuffle=True,
            callbacks=[
                (
                    "lr_scheduler",
                    LRScheduler(
                        policy=CosineAnnealingLR,
                        T_max=self.final_epochs,
                        eta_min=self.lr_min,
                    ),
                ),
                ("finite_guard", FiniteGuard(phase="final training")),
                *self._progress_callbacks(),
            ],
            classes=np.arange(len(self.classes_)),
            verbose=int(self.verbose >= 1),
            **self._loader_params(),
            **self._net_device_kwargs(),
        )
        if self.verbose >= 1:
            net.set_params(callbacks__print_log=StablePrintLog())
        self._announce("final training of the derived network")
        net.fit(images, y_enc)
        return net

    def _collect_histories(self) -> tuple[list[dict], list[dict]]:
        """``(search rows, final-training rows)``, each row with its phase."""
        rows = self._collect_history()
        return (
            [r for r in rows if r["phase"] == "search"],
            [r for r in rows if r["phase"] == "final"],
        )

    def _collect_history(self) -> list[dict]:
        rows = []
        keep = (
            "epoch",
            "train_loss",
            "train_acc",
            "valid_loss",
            "valid_acc",
            "arch_loss",
            "dur",
            "lr",
            "epsilon",
            "genotype",
            "arch_weights",
        )
        for row in self.net_.history:
            rows.append({"phase": "search"} | {k: row[k] for k in keep if k in row})
        if self.final_net_ is not None:
            n = len(rows)
            for row in self.final_net_.history:
                entry = {k: row[k] for k in ("train_loss", "dur") if k in row}
                entry["epoch"] = n + row["epoch"]
                rows.append({"phase": "final"} | entry)
        return rows
