"""Accelerate: one search over several GPUs, nodes or CPU processes."""

from __future__ import annotations

import warnings

import torch
from skorch import NeuralNetClassifier
from skorch.exceptions import DeviceWarning

# Importing skorch.hf needs no Hugging Face package; only using it needs
# ``accelerate`` (the optional extra ``skdarts[accelerate]``).
from skorch.hf import AccelerateMixin

from .contracts import unwrap_supernet
from .net import SearchNet, portable_getstate

__all__ = ["AcceleratedNeuralNetClassifier", "AcceleratedSearchNet"]

_UNSUPPORTED_DISTRIBUTED = ("DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA", "TP")


def _alpha_names(module) -> list[str]:
    return [n for n, _ in module.named_parameters() if n.startswith("alphas_")]


def _broadcast_from_main(tensors) -> None:
    """Overwrite ``tensors`` in place with process 0's values."""
    from accelerate.utils import broadcast

    with torch.no_grad():
        for t in tensors:
            t.copy_(broadcast(t.detach().clone(), from_process=0))


def _module_device(net):
    param = next(iter(net.module_.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


class _AcceleratedNetMixin:
    """What skdarts' accelerated skorch nets add to skorch's ``AccelerateMixin``.

    - Prediction is local: once trained, every process holds the whole model,
      so ``predict`` runs on the full input (not sharded, nothing gathered);
      any process, e.g. only the main one, can predict, score or save, and a
      pickled net loads and predicts without Accelerate's process group.
    - After training, what the fit registered with the accelerator is
      released, and the net pickles.
    - ``verbose=0`` is silent (skorch prints through the accelerator whatever
      the verbosity).
    """

    _local_inference = False

    def _initialize_callbacks(self):
        if not self.verbose and self.callbacks__print_log__sink == "auto":
            # PrintLog prints through any sink but ``print`` even when silent.
            self.callbacks__print_log__sink = print
        return super()._initialize_callbacks()

    def forward_iter(self, X, training=False, device="cpu"):
        self._local_inference = True
        try:
            yield from super().forward_iter(X, training=training, device=device)
        finally:
            self._local_inference = False

    def get_iterator(self, dataset, training=False):
        if self._local_inference or getattr(self, "_plain_loader", False):
            return super(AccelerateMixin, self).get_iterator(dataset, training=training)
        return super().get_iterator(dataset, training=training)

    def evaluation_step(self, batch, training=False):
        if not self._local_inference:
            return super().evaluation_step(batch, training=training)
        from accelerate.utils import send_to_device

        batch = send_to_device(batch, _module_device(self))
        return super(AccelerateMixin, self).evaluation_step(batch, training=training)

    _ACCELERATOR_LISTS = ("_models", "_optimizers", "_schedulers", "_dataloaders")

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        self._accelerator_known = {
            name: {id(o) for o in getattr(self.accelerator, name, [])}
            for name in self._ACCELERATOR_LISTS
        }
        # A criterion without trainable parameters needs no DDP wrapper (on
        # several CPU processes Accelerate would wrap it and DDP would refuse
        # it); it only follows the device, as Accelerate does on GPUs.
        plain = {}
        for name in self._criteria:
            crit = self.__dict__.get(name + "_")
            if isinstance(crit, torch.nn.Module) and not any(
                p.requires_grad for p in crit.parameters()
            ):
                plain[name + "_"] = crit
                self.__dict__[name + "_"] = None
        try:
            super()._initialize_accelerator()
        finally:
            for key, crit in plain.items():
                if self.accelerator.device_placement:
                    crit = crit.to(self.accelerator.device)
                self.__dict__[key] = crit
        return self

    def on_train_end(self, net, X=None, y=None, **kwargs):
        if self._multi_process():
            # DDP aligns buffers (BatchNorm statistics) at the start of each
            # forward; the last training batches left each process its own.
            _broadcast_from_main(
                b
                for name in self._modules
                if isinstance(getattr(self, name + "_"), torch.nn.Module)
                for b in self.accelerator.unwrap_model(
                    getattr(self, name + "_")
                ).buffers()
            )
        super().on_train_end(net, X=X, y=y, **kwargs)
        if self.unwrap_after_train:
            self._release_accelerator()

    def _release_accelerator(self):
        """Drop what this fit registered with the accelerator.

        The accelerator keeps every prepared model, optimizer and loader; left
        there they would keep this net's tensors alive after the fit and make
        the accelerator (an estimator parameter) impossible to pickle.
        """
        known = getattr(self, "_accelerator_known", None)
        if known is None:
            return
        for name in self._ACCELERATOR_LISTS:
            items = getattr(self.accelerator, name, None)
            if isinstance(items, list):
                ours = [o for o in items if id(o) not in known[name]]
                items[:] = [o for o in items if id(o) in known[name]]
                for loader in ours if name == "_dataloaders" else ():
                    # A loader left mid-way (an interrupted fit) stays
                    # registered in the accelerator's gradient state.
                    if hasattr(loader, "end"):
                        loader.end()
        self._accelerator_known = None
        # The finished LR schedulers point at Accelerate's optimizer wrapper,
        # which their step counter patched (unpicklable): point them at the
        # optimizer it wraps (a new fit makes new schedulers).
        for _, cb in getattr(self, "callbacks_", []):
            scheduler = getattr(cb, "lr_scheduler_", None)
            inner = getattr(getattr(scheduler, "optimizer", None), "optimizer", None)
            if isinstance(inner, torch.optim.Optimizer):
                scheduler.optimizer = inner

    # -- the same history on every process -----------------------------------

    #: Per-batch history entries (besides the loss) averaged over processes.
    _averaged_batch_keys: tuple[str, ...] = ()

    def _multi_process(self) -> bool:
        return self.accelerator.num_processes > 1

    def _mean_over_processes(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(t, reduction="mean").tolist()

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        if not self._multi_process():
            return step
        row = self.history[-1]["batches"][-1]
        keys = [k for k in self._averaged_batch_keys if k in row]
        means = self._mean_over_processes(
            [step["loss"].item()] + [float(row[k]) for k in keys]
        )
        for k, v in zip(keys, means[1:]):
            row[k] = v
        step["loss"] = torch.as_tensor(means[0])
        return step

    def validation_step(self, batch, **fit_params):
        step = super().validation_step(batch, **fit_params)
        if not self._multi_process():
            return step
        (loss,) = self._mean_over_processes([step["loss"].item()])
        step["loss"] = torch.as_tensor(loss)
        # Scores computed from cached predictions (valid_acc) see the whole
        # split: predictions and the batch are gathered (see notify).
        step["y_pred"] = self.accelerator.gather_for_metrics(step["y_pred"])
        self._gathered_batch = self.accelerator.gather_for_metrics(batch)
        return step

    def notify(self, method_name, **cb_kwargs):
        gathered = getattr(self, "_gathered_batch", None)
        if (
            method_name == "on_batch_end"
            and gathered is not None
            and not cb_kwargs.get("training", True)
        ):
            cb_kwargs["batch"] = gathered
            self._gathered_batch = None
        super().notify(method_name, **cb_kwargs)

    def __getstate__(self):
        # Accelerate's optimizer wrappers (patched by torch's LR schedulers)
        # do not pickle; the optimizers they wrap carry the whole state.
        # (skorch serialises the optimizers inside ``__getstate__``.)
        swapped = {}
        for name in self._optimizers:
            key = name + "_"
            opt = self.__dict__.get(key)
            inner = getattr(opt, "optimizer", None)
            if isinstance(inner, torch.optim.Optimizer):
                swapped[key] = opt
                self.__dict__[key] = inner
        try:
            return super().__getstate__()
        finally:
            self.__dict__.update(swapped)

    def __setstate__(self, state):
        # skorch maps device=None to the CPU with a warning; the accelerator
        # places things (device stays None) and prediction follows the module.
        device = state.get("device")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeviceWarning)
            super().__setstate__(state)
        self.device = device


class AcceleratedSearchNet(_AcceleratedNetMixin, AccelerateMixin, SearchNet):
    """:class:`SearchNet` on Hugging Face Accelerate (data-parallel search).

    Every process runs the same script on the same data; the loaders (the
    weight split, the architecture split and the evaluation data) are sharded
    across processes, the weights are synchronised by DDP and the alphas by
    an explicit all-reduce, so one search spreads over several GPUs, nodes or
    CPU processes (``accelerate launch``). With a single process it trains
    exactly like :class:`SearchNet`.

    Why the alphas are kept out of DDP: a weight step does not use them (it
    mixes with detached, perturbed weights) and an alpha step freezes the
    weights, so DDP would see unused parameters every step and fail, or
    silently skip them with ``find_unused_parameters`` (the failure users
    report when they spread DARTS over GPUs). Here DDP ignores the alphas;
    they are broadcast from process 0 when the net is prepared, and their
    gradients are averaged over processes before every alpha step, so they
    stay identical everywhere.

    Per-batch losses and accuracies are averaged over processes and the
    validation predictions gathered, so the history (and every callback that
    reads it, e.g. early stopping) is the same on every process.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        Its device placement, mixed precision and process group are used.
        DDP, multi-CPU and single-device setups are supported; DeepSpeed,
        FSDP, XLA and gradient accumulation are not (a ``ValueError`` says so).
    *args, **kwargs
        As :class:`SearchNet`; leave ``device=None`` (the accelerator places
        the data and the module).

    Notes
    -----
    Prediction is local: after training every process holds the whole
    model, and ``predict`` runs on the full input on the process that calls
    it (so e.g. only the main process may predict or save).
    """

    def _check_accelerator(self):
        acc = self.accelerator
        kind = getattr(acc.distributed_type, "name", str(acc.distributed_type))
        if kind in _UNSUPPORTED_DISTRIBUTED:
            raise ValueError(
                f"AcceleratedSearchNet supports data-parallel (DDP) and single-"
                f"device accelerators; got distributed_type={kind!r}. Use a "
                "multi-GPU/multi-CPU/single-device Accelerator."
            )
        steps = getattr(acc, "gradient_accumulation_steps", 1)
        if steps != 1:
            raise ValueError(
                "AcceleratedSearchNet does not support gradient accumulation (the "
                "alpha and weight steps alternate every batch); got "
                f"gradient_accumulation_steps={steps}, accepted: 1. Use a larger "
                "batch_size or more processes instead."
            )

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        self._check_accelerator()
        module = self.module_
        if isinstance(module, torch.nn.Module):
            names = _alpha_names(module)
            # DDP spells the root module's parameters both "name" and ".name".
            names += ["." + n for n in names if "." not in n]
            ddp = torch.nn.parallel.DistributedDataParallel
            ddp._set_params_and_buffers_to_ignore_for_model(module, names)
        super()._initialize_accelerator()
        self._broadcast_alphas()
        return self

    def _alphas(self) -> list[torch.nn.Parameter]:
        module = unwrap_supernet(self)
        names = set(_alpha_names(module))
        return [p for n, p in module.named_parameters() if n in names]

    def _broadcast_alphas(self):
        """Start every process from process 0's alphas (DDP ignores them)."""
        if self._multi_process():
            _broadcast_from_main(self._alphas())

    # -- the hooks SearchNet's bilevel step calls --------------------------

    def _backward(self, loss, arch: bool = False):
        self.accelerator.backward(loss)
        if arch and self._multi_process():
            alphas = [p for p in self._alphas() if p.grad is not None]
            if alphas:
                flat = torch.cat([p.grad.reshape(-1) for p in alphas])
                flat = self.accelerator.reduce(flat, reduction="mean")
                offset = 0
                for p in alphas:
                    n = p.grad.numel()
                    p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                    offset += n

    def _clip_grad_norm(self, parameters, max_norm: float):
        # Unscales mixed-precision gradients before measuring them.
        self.accelerator.clip_grad_norm_(parameters, max_norm)

    _averaged_batch_keys = ("train_acc_batch", "arch_loss")

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        # One process: the architecture loader stays a plain DataLoader so
        # that the random draws (and so the search) are exactly SearchNet's;
        # Accelerate's loader starts its iterator lazily, which reorders them.
        self._plain_loader = not self._multi_process()
        try:
            super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        finally:
            self._plain_loader = False

    def _next_arch_batch(self):
        batch = super()._next_arch_batch()
        if self._multi_process():
            return batch  # a prepared loader already placed it
        from accelerate.utils import send_to_device

        return send_to_device(batch, self.accelerator.device)

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        # An architecture loader left mid-way would stay registered as the
        # accelerator's active loader; retire it.
        loader = getattr(self, "_arch_loader", None)
        if hasattr(loader, "end"):
            loader.end()
        super().on_epoch_end(net, dataset_train, dataset_valid, **kwargs)


class AcceleratedNeuralNetClassifier(
    _AcceleratedNetMixin, AccelerateMixin, NeuralNetClassifier
):
    """skorch's ``NeuralNetClassifier`` on Accelerate.

    Trains the derived network after an accelerated search, on the same
    processes (see :class:`AcceleratedSearchNet`).
    """

    def __getstate__(self):
        return portable_getstate(self, super().__getstate__)
