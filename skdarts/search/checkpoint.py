"""Resumable searches: one atomic file with everything a search needs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from skorch.callbacks import Checkpoint
from skorch.history import History

from .._files import atomic_writer

__all__ = ["SearchCheckpoint"]


def _atomic_torch_save(obj, path: Path) -> None:
    """Write ``obj`` to ``path`` atomically (a crash leaves the old file)."""
    with atomic_writer(path) as f:
        torch.save(obj, f)


class SearchCheckpoint(Checkpoint):
    """skorch ``Checkpoint`` that saves everything a search needs to resume.

    Every ``checkpoint_every`` epochs (and after the last planned one) it
    writes one file,
    ``<dirname>/<f_state>``, atomically (temporary file, then rename: a crash
    never leaves a half-written checkpoint). The file holds the module (alphas
    and weights), both optimizers (``optimizer_`` and ``optimizer_arch_``),
    the state of the ``lr_scheduler`` callback, the history, the random
    number generator states and ``metadata``; it contains only tensors and
    plain data, so :meth:`load_state` reads it with ``weights_only=True``.

    :meth:`restore` puts a saved state back into an initialised net; the
    next ``partial_fit`` continues exactly where the checkpoint was taken.

    Parameters
    ----------
    dirname : str or path-like
        Folder of the checkpoint (created when needed).
    checkpoint_every : int, default=1
        Save every ``checkpoint_every`` epochs (the name of the estimator's
        parameter too).
    f_state : str, default="search_state.pt"
    metadata : dict, optional
        Extra data stored with the state (plain data and tensors).
    sink : callable, default=None
        Receives a message per checkpoint (e.g. ``print``).
    every : int, optional
        Deprecated name of ``checkpoint_every`` (a ``FutureWarning``).

    Examples
    --------
    >>> cp = SearchCheckpoint("ckpt", checkpoint_every=2)
    >>> cp.path_.name
    'search_state.pt'
    """

    def __init__(
        self,
        dirname="",
        checkpoint_every: int = 1,
        f_state: str = "search_state.pt",
        metadata: dict | None = None,
        sink=None,
        *,
        every: int | None = None,
    ):
        # skorch's own files are not written: one atomic file holds it all.
        super().__init__(
            monitor=None,
            f_params=None,
            f_optimizer=None,
            f_criterion=None,
            f_history=None,
            dirname=str(dirname),
            event_name="event_cp",
        )
        if every is not None:
            warnings.warn(
                "SearchCheckpoint(every=...) is deprecated and will be removed; "
                "use checkpoint_every=... (the estimator's name for it).",
                FutureWarning,
                stacklevel=2,
            )
            checkpoint_every = every
        self.checkpoint_every = checkpoint_every
        self.f_state = f_state
        self.metadata = metadata
        self.sink = sink

    #: The state :meth:`restore` loaded, finished when training begins.
    _pending = None

    def __setstate__(self, state):
        # Pickled (inside a fitted estimator) before the rename.
        if "every" in state:
            state["checkpoint_every"] = state.pop("every")
        self.__dict__.update(state)

    def get_params(self, deep=True):
        return {
            "dirname": self.dirname,
            "checkpoint_every": self.checkpoint_every,
            "f_state": self.f_state,
            "metadata": self.metadata,
            "sink": self.sink,
        }

    @property
    def path_(self) -> Path:
        return Path(self.dirname) / self.f_state

    def initialize(self):
        every = self.checkpoint_every
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"checkpoint_every must be an int >= 1; got {every!r}.")
        self._pending = None
        return self

    def on_epoch_end(self, net, **kwargs):
        done = len(net.history)
        do = done % self.checkpoint_every == 0 or done >= net.max_epochs
        net.history.record(self.event_name, bool(do))
        if do:
            self.save_model(net)
            if self.sink is not None:
                self.sink(f"Search checkpoint saved after epoch {done}: {self.path_}")

    def on_train_end(self, net, **kwargs):
        pass

    def state(self, net) -> dict:
        """Everything needed to continue ``net``'s training, as plain data."""
        scheduler = None
        for name, cb in net.callbacks_:
            if name == "lr_scheduler" and hasattr(cb, "lr_scheduler_"):
                scheduler = cb.lr_scheduler_.state_dict()
        arch_opt = getattr(net, "optimizer_arch_", None)
        cuda_rng = []
        # Not net.device: under Accelerate it is None while the search runs on
        # a GPU (whose generator draws the SmoothDARTS noise).
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda_rng = torch.cuda.get_rng_state_all()
        return {
            "format": 1,
            "epochs_done": len(net.history),
            "module": net.module_.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "optimizer_arch": arch_opt.state_dict() if arch_opt is not None else None,
            "lr_scheduler": scheduler,
            "history": json.dumps(net.history.to_list()),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": list(cuda_rng),
            "fit_start_epoch": int(getattr(net, "_fit_start_epoch", 0)),
            "metadata": self.metadata,
        }

    def save_model(self, net):
        _atomic_torch_save(self.state(net), self.path_)

    @staticmethod
    def load_state(path) -> dict:
        """Read a checkpoint file without executing code (``weights_only``)."""
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"The search checkpoint {str(path)!r} cannot be read ({exc}); delete "
                "it to start the search afresh."
            ) from exc

    def restore(self, net, state: dict) -> None:
        """Load ``state`` into the initialised ``net`` to continue from it.

        Module, optimizers and history are set now; the learning-rate
        scheduler, the optimizers' learning rates and the random number
        generators are set again when training begins, after the
        ``lr_scheduler`` callback has rebuilt its scheduler.
        """
        net.module_.load_state_dict(state["module"])
        net.optimizer_.load_state_dict(state["optimizer"])
        if state.get("optimizer_arch") is not None:
            net.optimizer_arch_.load_state_dict(state["optimizer_arch"])
        net.history = History(json.loads(state["history"]))
        self._pending = state

    def on_train_begin(self, net, **kwargs):
        state, self._pending = self._pending, None
        if state is None:
            return
        # The scheduler callback just stepped the fresh scheduler: undo it.
        net.optimizer_.load_state_dict(state["optimizer"])
        for name, cb in net.callbacks_:
            if name == "lr_scheduler" and state.get("lr_scheduler") is not None:
                cb.lr_scheduler_.load_state_dict(state["lr_scheduler"])
        net._fit_start_epoch = state["fit_start_epoch"]
        torch.set_rng_state(state["rng_cpu"])
        if state.get("rng_cuda") and torch.cuda.is_available():
            # A checkpoint from a machine with more GPUs resumes on this one.
            count = torch.cuda.device_count()
            for index, rng in enumerate(state["rng_cuda"][:count]):
                torch.cuda.set_rng_state(rng, index)
