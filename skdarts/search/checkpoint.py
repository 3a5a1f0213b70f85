"""Resumable searches: one atomic file with everything a search needs."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import torch
from skorch.callbacks import Checkpoint
from skorch.history import History

from .._files import atomic_writer

__all__ = ["SearchCheckpoint", "completed_epochs", "find_checkpoint", "fit_or_resume"]


#: Format of the file around the state: a sha256 over the serialised state.
_WRAPPED = 2
_REQUIRED = {
    "module": dict,
    "optimizer": dict,
    "history": str,
    "rng_cpu": torch.Tensor,
    "fit_start_epoch": int,
}


def _atomic_torch_save(obj, path: Path) -> None:
    """Write ``obj`` to ``path`` atomically, with a checksum over its bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    wrapped = {
        "format": _WRAPPED,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    with atomic_writer(path) as f:
        torch.save(wrapped, f)


def _unwrap(raw, path) -> dict:
    """The state inside a checkpoint file's content, its checksum verified."""
    if isinstance(raw, dict) and raw.get("format") == _WRAPPED:
        payload = raw.get("payload")
        if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
            raise ValueError("its payload is missing")
        data = payload.numpy().tobytes()
        if hashlib.sha256(data).hexdigest() != raw.get("sha256"):
            raise ValueError(
                "its checksum does not match its content (the file was changed or "
                "damaged)"
            )
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    warnings.warn(
        f"The search checkpoint {str(path)!r} was written without a checksum (by an "
        "older skdarts); it is loaded unverified, and the next checkpoint carries "
        "one.",
        UserWarning,
        stacklevel=4,
    )
    return raw


def _check_state(state) -> None:
    if not isinstance(state, dict):
        raise ValueError(f"it holds a {type(state).__name__}, not a search state")
    for key, kind in _REQUIRED.items():
        if not isinstance(state.get(key), kind):
            raise ValueError(f"its {key!r} is missing or not a {kind.__name__}")
    try:
        history = json.loads(state["history"])
    except ValueError as exc:
        raise ValueError(f"its history is not valid JSON ({exc})") from None
    if not isinstance(history, list):
        raise ValueError("its history is not a list of epochs")


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
        """Read a checkpoint file without executing code (``weights_only``).

        The checksum stored with the state is verified (a file from before
        checksums loads with a warning); a file that cannot be read, fails
        the check or lacks part of a search state raises ``ValueError``
        naming it.
        """
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
            state = _unwrap(raw, path)
            _check_state(state)
            return state
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
        try:
            net.module_.load_state_dict(state["module"])
            net.optimizer_.load_state_dict(state["optimizer"])
            if state.get("optimizer_arch") is not None:
                net.optimizer_arch_.load_state_dict(state["optimizer_arch"])
            net.history = History(json.loads(state["history"]))
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"The search checkpoint {str(self.path_)!r} does not fit this "
                f"search ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "delete it to start the search afresh."
            ) from None
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


def completed_epochs(history) -> int:
    """Epochs that ran to their end (an interrupted one has no train_loss)."""
    return sum(1 for row in history if "train_loss" in row)


def find_checkpoint(
    folder, key: str, what: str = "search", **params
) -> tuple[SearchCheckpoint, dict | None]:
    """The checkpoint callback for the run keyed ``key``, and its saved state.

    ``folder`` holds the checkpoint; ``params`` go to :class:`SearchCheckpoint`
    (the fingerprint is stored in its ``metadata``). Returns ``(checkpoint,
    None)`` when nothing was saved yet. A saved state whose fingerprint is not
    ``key`` belongs to another run: a ``ValueError`` says so (``what`` names
    the kind of run in the message).
    """
    checkpoint = SearchCheckpoint(folder, metadata={"fingerprint": key}, **params)
    if not checkpoint.path_.exists():
        return checkpoint, None
    state = SearchCheckpoint.load_state(checkpoint.path_)
    if (state.get("metadata") or {}).get("fingerprint") != key:
        raise ValueError(
            f"The checkpoint {str(checkpoint.path_)!r} belongs to another {what} "
            "(fingerprint mismatch); delete it or choose another checkpoint_dir."
        )
    return checkpoint, state


def fit_or_resume(net, X, y, state: dict | None, max_epochs: int) -> int:
    """``net.fit(X, y)``, or continue the saved ``state`` to ``max_epochs``.

    ``net`` must carry the :class:`SearchCheckpoint` that saved ``state`` as
    its ``search_checkpoint`` callback. Returns the epoch resumed from (0 for
    a fresh fit).
    """
    if state is None:
        net.fit(X, y)
        return 0
    net.initialize()
    dict(net.callbacks_)["search_checkpoint"].restore(net, state)
    done = int(state["epochs_done"])
    net.partial_fit(X, y, epochs=max(max_epochs - done, 0))
    return done
