"""One training step captured as a CUDA graph and replayed (private).

A DARTS search step launches tens of thousands of small kernels; on a GPU
the time goes to launching them, not to the arithmetic. A CUDA graph records
the kernels of one step once and replays them with a single launch, the
inputs copied into fixed ("static") tensors first. The rules that make this
correct (PyTorch, "CUDA Graphs" in the CUDA semantics notes):

- shapes, dtypes and every Python-side value the step reads (learning rates,
  smoothing radius, ...) are frozen into the graph: a step whose *signature*
  differs needs its own graph;
- the step must not synchronise with the host (``.item()``, ``bool(t)``,
  data-dependent shapes) nor copy from host memory;
- a few eager iterations on a side stream precede the capture, so lazily
  created state (optimizer buffers, cuDNN plans, index caches) exists;
- capture does not run the kernels: the step of the batch that triggers the
  capture is the first replay.

:class:`StepGraphs` keeps the graphs of the most recent signatures. On a
machine without CUDA it can *emulate* the protocol (static inputs, replays,
signatures) and check the step for host synchronisations, so that the logic
is tested where no GPU is at hand.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["CaptureError", "HostSyncError", "StepGraphs", "allow_host_sync"]

# Operators that make the host wait for the device (or whose output shape
# depends on tensor values): illegal inside a CUDA graph capture.
_SYNC_OPS = {
    "aten::_local_scalar_dense",
    "aten::is_nonzero",
    "aten::nonzero",
    "aten::masked_select",
    "aten::unique",
    "aten::_unique2",
    "aten::equal",
}

_allowed = threading.local()


class HostSyncError(RuntimeError):
    """A step meant for graph capture synchronised with the host."""


class CaptureError(RuntimeError):
    """Capturing a step failed; the step can still run eagerly."""


@contextlib.contextmanager
def allow_host_sync():
    """Exempt a block from the emulated capture's host-sync check.

    For code that is capturable on CUDA for reasons the CPU emulation cannot
    see (e.g. an optimizer made ``capturable`` only on CUDA devices).
    """
    previous = getattr(_allowed, "on", False)
    _allowed.on = True
    try:
        yield
    finally:
        _allowed.on = previous


class _SyncDetector(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not getattr(_allowed, "on", False):
            name = func._schema.name
            if name in _SYNC_OPS:
                raise HostSyncError(
                    f"{name} inside a step meant for CUDA graph capture: it "
                    "synchronises with the host."
                )
        return func(*args, **(kwargs or {}))


class _Graph:
    """One captured step: static inputs, its graph and its static outputs."""

    def __init__(self, static_inputs, graph, outputs):
        self.static_inputs = static_inputs
        self.graph = graph
        self.outputs = outputs
        self.ran = False


class StepGraphs:
    """Run a step function through CUDA graphs, one per signature.

    Parameters
    ----------
    fn : callable
        ``fn(*tensors) -> dict of tensors``: the step. It must read its data
        only from its arguments (they become static tensors) and must not
        synchronise with the host.
    warmup : int, default=3
        Eager calls of a signature before its graph is captured.
    max_graphs : int, default=2
        Graphs kept (e.g. the full batch and the last, smaller one); the
        least recently used is dropped, its memory with it.
    emulate : bool, default=False
        Emulate capture and replay without CUDA (replays call ``fn`` on the
        static inputs and check it for host synchronisations).
    """

    def __init__(
        self,
        fn: Callable[..., dict],
        warmup: int = 3,
        max_graphs: int = 2,
        emulate: bool = False,
    ):
        self.fn = fn
        self.warmup = warmup
        self.max_graphs = max_graphs
        self.emulate = emulate
        self._graphs: OrderedDict[Hashable, _Graph] = OrderedDict()
        self._seen: dict[Hashable, int] = {}
        self._stream = None
        self.n_captures = 0
        self.n_replays = 0

    def __call__(self, key: Hashable, tensors: Sequence[torch.Tensor]) -> dict:
        """Run the step on ``tensors``, through the graph of ``key``.

        Returns fresh tensors (the graph's outputs are overwritten by the
        next replay, so they are cloned).
        """
        graph = self._graphs.get(key)
        if graph is None:
            count = self._seen.get(key, 0)
            if count < self.warmup:
                self._seen[key] = count + 1
                while len(self._seen) > 64:  # signatures of past epochs
                    del self._seen[next(iter(self._seen))]
                return self._eager(tensors)
            graph = self._capture(key, tensors)
        else:
            self._graphs.move_to_end(key)
        if graph.ran:
            graph.ran = False  # an emulated capture ran this batch's step
        else:
            for static, t in zip(graph.static_inputs, tensors):
                static.copy_(t, non_blocking=True)
            self._replay(graph)
            self.n_replays += 1
        return {k: None if v is None else v.clone() for k, v in graph.outputs.items()}

    def clear(self) -> None:
        """Drop every graph (and the memory their pools hold)."""
        self._graphs.clear()
        self._seen.clear()

    # -- internals --------------------------------------------------------

    def _eager(self, tensors):
        if self.emulate:
            return self.fn(*tensors)
        # Warm-up iterations belong on a side stream (CUDA graph rules).
        if self._stream is None:
            self._stream = torch.cuda.Stream()
        self._stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._stream):
            out = self.fn(*tensors)
        torch.cuda.current_stream().wait_stream(self._stream)
        return out

    def _capture(self, key, tensors):
        """Capture the graph of ``key``; :class:`CaptureError` if that fails.

        On CUDA the capture runs no kernel, so after a failure nothing has
        changed and the caller can run the step eagerly. Emulated, the
        capture is a checked run of the step (and stands for this batch's
        step; a failure may leave it half done).
        """
        static = [t.detach().clone() for t in tensors]
        try:
            if self.emulate:
                with _SyncDetector():
                    outputs = self.fn(*static)
                graph = _Graph(static, None, outputs)
                graph.ran = True
            else:
                cuda_graph = torch.cuda.CUDAGraph()
                torch.cuda.synchronize()
                # Other threads (a loader's pin-memory thread) may use CUDA
                # meanwhile: only this thread's calls must be capture-safe.
                with torch.cuda.graph(cuda_graph, capture_error_mode="thread_local"):
                    outputs = self.fn(*static)
                graph = _Graph(static, cuda_graph, outputs)
        except Exception as exc:
            self.clear()
            first = (str(exc).splitlines() or [""])[0][:300]
            raise CaptureError(f"{type(exc).__name__}: {first}") from exc
        self._graphs[key] = graph
        self.n_captures += 1
        while len(self._graphs) > self.max_graphs:
            self._graphs.popitem(last=False)
        return graph

    def _replay(self, graph):
        if not self.emulate:
            graph.graph.replay()
            return
        with _SyncDetector():
            graph.outputs = self.fn(*graph.static_inputs)
