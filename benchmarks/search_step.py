"""Time one first-order (Smooth)DARTS search step: ours against the original.

One step is what :meth:`skdarts.search.SearchNet.train_step` does: an alpha
step on an architecture batch (Adam), then a weight step on a training batch
with the mixing weights randomly perturbed (SDARTS-RS), gradient clipping and
SGD. "Ours" runs ``SearchNet.train_step`` itself on
:class:`skdarts.supernet.Supernet`; the baseline runs the same step, written
the way the original DARTS code does it (all weight gradients computed in the
alpha step too), on the straightforward supernet of
:mod:`skdarts.supernet.reference`. Both start from the same weights, and a
self-check compares their losses before anything is timed.

Peak memory is the largest amount of tensor memory a step holds above what
was held before it: on CUDA from ``torch.cuda.max_memory_allocated``, on the
CPU from the allocation events of ``torch.profiler`` (the process RSS is
blind to memory the allocator keeps). A replayed CUDA graph allocates
nothing (its memory was taken at capture), so with ``--cuda-graphs on`` our
peak is measured from before the first warm-up step to the end of the
capture: the graph's memory plus the optimizer state, an upper bound.

Memory as the operating system sees it: on the CPU each side also runs
alone in a child process that reports its peak resident set size (max RSS)
above what the process held right after its imports, i.e. the step's memory
including what the allocator keeps and the model and optimizer state; the
line ``rss_growth_mb ours=<a> baseline=<b> ratio=<a/b>`` (``--no-rss`` skips
it) stands next to the allocation-based ``memory_ratio``. The imports
themselves (torch and skdarts, the same for both) are printed once.

With ``--batch 2 --size 8`` on the CPU the arithmetic is negligible and a
step costs what launching its operators costs: the same quantity that bounds
a GPU step of the "cifar" configuration, measured where no GPU is at hand.

Usage::

    python benchmarks/search_step.py                      # tiny, CPU, 2 threads
    python benchmarks/search_step.py --device cuda --config cifar
    python benchmarks/search_step.py --ours-only          # images_per_s=... line
    python benchmarks/search_step.py --device cuda --config cifar --cuda-graphs on
    # Dispatch cost alone (tensors so small that arithmetic is negligible):
    python benchmarks/search_step.py --config cifar --batch 2 --size 8 --threads 1
    python benchmarks/search_step.py --config cifar --flops   # arithmetic per step

The last line is ``speedup=<x> memory_ratio=<y>`` (ours / baseline, images/s
and peak memory), or ``images_per_s=<x> peak_mem_mb=<y>`` with ``--ours-only``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skorch.dataset import Dataset  # noqa: E402
from skorch.helper import predefined_split  # noqa: E402

from skdarts.search import SearchNet, perturb_arch_weights  # noqa: E402
from skdarts.supernet import Supernet  # noqa: E402
from skdarts.supernet.reference import reference_from_supernet  # noqa: E402


def _peak_rss_mb() -> float:
    """This process's peak resident set size (MiB).

    Linux: ``VmHWM`` of ``/proc/self/status``, which starts afresh with the
    process image; ``ru_maxrss`` would not do for a child, as Linux carries
    it over from the parent across ``fork`` and ``exec``.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


#: Peak RSS (MiB) once everything above is imported: the baseline of the RSS
#: growth a child process reports (``--rss-side``).
_IMPORT_RSS_MB = _peak_rss_mb()

CONFIGS = {
    "tiny": dict(init_channels=8, n_cells=5, n_nodes=4, size=16, batch=32),
    "cifar": dict(init_channels=16, n_cells=8, n_nodes=4, size=32, batch=64),
}
N_CLASSES = 10
EPSILON = 0.3
#: Timed steps per run on the CPU unless ``--steps`` says otherwise.
CPU_STEPS = 5


def make_all_batches(cfg, device, seed):
    """Training and architecture batches of a configuration (seeds ``seed``
    and ``seed + 1``)."""
    return make_batches(cfg, device, seed=seed), make_batches(
        cfg, device, seed=seed + 1
    )


def make_batches(cfg, device, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        shape = (cfg["batch"], cfg["channels"], cfg["size"], cfg["size"])
        x = torch.randn(*shape, generator=g)
        y = torch.randint(0, N_CLASSES, (cfg["batch"],), generator=g)
        out.append((x.to(device), y.to(device)))
    return out


class Ours:
    """``SearchNet.train_step`` on our supernet, driven without a data loader."""

    name = "ours"

    def __init__(self, module, device, arch_batches, **options):
        ds = Dataset(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
        self.net = SearchNet(
            module=module,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.SGD,
            optimizer__lr=0.025,
            optimizer__momentum=0.9,
            optimizer__weight_decay=3e-4,
            optimizer_arch__lr=3e-4,
            optimizer_arch__betas=(0.5, 0.999),
            optimizer_arch__weight_decay=1e-3,
            smoothing="random",
            epsilon=EPSILON,
            epsilon_start=EPSILON,
            max_epochs=1,
            train_split=predefined_split(ds),
            device=device,
            verbose=0,
            **options,
        )
        self.net.initialize()
        self.net.history.new_epoch()
        self.net._arch_loader = arch_batches
        self.net._arch_batches = itertools.cycle(arch_batches)

    @property
    def module(self):
        return self.net.module_

    def step(self, batch):
        self.net.history.new_batch()
        return self.net.train_step(batch)["loss"]


class Baseline:
    """The original DARTS first-order step on the straightforward supernet."""

    name = "baseline"

    def __init__(self, module, device, arch_batches):
        self.module = module
        self.crit = torch.nn.CrossEntropyLoss()
        self.opt_w = torch.optim.SGD(
            module.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4
        )
        self.opt_a = torch.optim.Adam(
            module.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3
        )
        self.arch_batches = itertools.cycle(arch_batches)

    def step(self, batch):
        x, y = batch
        xa, ya = next(self.arch_batches)
        self.module.train()
        self.opt_a.zero_grad()
        self.crit(self.module(xa), ya).backward()
        self.opt_a.step()
        weights = perturb_arch_weights(self.module.arch_weights(), EPSILON)
        self.opt_w.zero_grad()
        logits = self.module(x, arch_weights=weights)
        loss = self.crit(logits, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.module.weight_parameters(), 5.0)
        self.opt_w.step()
        (logits.argmax(1) == y).float().mean().item()
        return loss.detach()


def _conv_backward_flop(
    grad_out_shape, x_shape, w_shape, *args, out_shape=None, **kwargs
):
    """FLOPs of a (non-transposed) convolution's backward, groups included.

    Each of the input and weight gradients costs what the forward costs:
    2 x (output elements) x (weight elements per output channel). PyTorch's
    own formula ignores ``groups`` for the weight gradient and overcounts a
    depthwise convolution's by the channel count.
    """
    output_mask = args[-1]
    per_gradient = 2 * math.prod(grad_out_shape) * math.prod(w_shape[1:])
    return per_gradient * (int(output_mask[0]) + int(output_mask[1]))


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def warm_up(runner, batches, device, warmup):
    """Run the untimed steps; the CUDA peak memory they reached (MB), or None."""
    warm_peak = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    for b in itertools.islice(itertools.cycle(batches), warmup):
        runner.step(b)
    sync(device)
    if device == "cuda":
        warm_peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    return warm_peak


def timed(runner, batches, device, steps):
    """Median seconds per step over ``steps`` timed steps."""
    times = []
    for b in itertools.islice(itertools.cycle(batches), steps):
        t0 = time.perf_counter()
        runner.step(b)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_memory_mb(runner, batch, device):
    """Peak tensor memory of one step above what was held before it, in MB."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        runner.step(batch)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    import warnings

    from torch.profiler import ProfilerActivity, profile

    warnings.filterwarnings("ignore", message=".*allocated before the profiling")

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        runner.step(batch)
    # Top-level events carry the net memory of everything under them; their
    # running sum is the memory held between operators.
    events = [e for e in prof.events() if e.cpu_parent is None]
    events.sort(key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:
        current += e.cpu_memory_usage
        peak = max(peak, current)
    return peak / 2**20


def self_check(ours, base, batch, device, tol):
    """Both networks must compute the same loss on the same batch."""
    x, y = batch
    crit = torch.nn.CrossEntropyLoss()
    with torch.no_grad():
        a = crit(ours.module.train()(x), y).item()
        b = crit(base.module.train()(x), y).item()
    ok = abs(a - b) <= tol * max(1.0, abs(b))
    print(f"self-check  loss ours={a:.6f} baseline={b:.6f} {'ok' if ok else 'FAIL'}")
    if not ok:
        raise SystemExit("ours and the baseline disagree; timings would mean nothing")


def _config(args) -> dict:
    """The configuration's sizes with the ``--batch`` / ``--size`` /
    ``--channels`` overrides."""
    cfg = dict(CONFIGS[args.config]) | {"channels": args.channels}
    for key in ("batch", "size"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    return cfg


def _arch(cfg: dict) -> dict:
    """Supernet arguments of a configuration (DARTS space, its input
    channels, 10 classes)."""
    return {k: cfg[k] for k in ("init_channels", "n_cells", "n_nodes")} | dict(
        search_space="darts", in_channels=cfg["channels"], n_classes=N_CLASSES
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads (default 2; CPU only)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per run (median)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="interleaved runs, ours then the baseline (default 3); the speedup "
        "printed last is the median of the runs' speedups",
    )
    parser.add_argument(
        "--channels",
        type=int,
        choices=[1, 3],
        default=3,
        help="input channels: 3 (RGB, default) or 1 (grayscale)",
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps")
    parser.add_argument("--ours-only", action="store_true", help="time only our step")
    parser.add_argument(
        "--amp",
        choices=["bf16", "off"],
        default="off",
        help="bf16 autocast of our supernet (default off)",
    )
    parser.add_argument(
        "--compile",
        choices=["on", "off"],
        default="off",
        help="torch.compile our cells, CUDA only (default off)",
    )
    parser.add_argument(
        "--cuda-graphs",
        choices=["on", "off"],
        default="off",
        help="replay our step as a CUDA graph, CUDA only (default off)",
    )
    parser.add_argument(
        "--flops",
        action="store_true",
        help="also count the floating-point operations of one step of each side",
    )
    parser.add_argument("--batch", type=int, default=None, help="override batch")
    parser.add_argument("--size", type=int, default=None, help="override image size")
    parser.add_argument("--partial-channels", type=int, default=1)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-rss",
        action="store_true",
        help="skip the per-side max-RSS measurement (CPU; child processes)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="where our CPU step's time goes: phases, and operators at 1 thread "
        "and at --threads (torch.profiler); prints no speedup",
    )
    parser.add_argument(
        "--rss-side", choices=["ours", "baseline"], help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.rss_side:
        return _rss_child(args)
    if args.profile:
        if args.device != "cpu":
            raise SystemExit("--profile: CPU only")
        return _profile(args)

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if device == "cpu":
        torch.set_num_threads(args.threads)
    cfg = _config(args)
    graphs = args.cuda_graphs == "on"
    if graphs and device != "cuda":
        raise SystemExit("--cuda-graphs on: needs --device cuda")
    steps = args.steps or (CPU_STEPS if device == "cpu" else 20)
    warmup = args.warmup or (1 if device == "cpu" else 5)
    if graphs:
        warmup = max(warmup, 5)  # 3 eager steps, the capture, one replay
    amp = args.amp
    compile_ = args.compile == "on"

    torch.manual_seed(args.seed)
    arch = _arch(cfg)
    options = dict(
        amp="bf16" if amp == "bf16" else None,
        compile_cells=compile_,
        partial_channels=args.partial_channels,
        checkpointing=args.checkpointing,
    )
    module = Supernet(**arch, **options).to(device)
    batches, arch_batches = make_all_batches(cfg, device, args.seed)
    print(
        f"config={args.config} {cfg} device={device}"
        + (f" threads={torch.get_num_threads()}" if device == "cpu" else "")
        + f" steps={steps} warmup={warmup} amp={amp} compile={compile_}"
        + f" partial_channels={args.partial_channels}"
        + f" checkpointing={args.checkpointing}"
        + f" cuda_graphs={graphs}"
    )
    runners = []
    if not args.ours_only:
        plain = Supernet(**arch).to(device)
        if args.partial_channels == 1:
            # Same weights; with partial channels the operations are smaller
            # and the baseline keeps its own (same-seed) initialisation.
            plain.load_state_dict(module.state_dict())
        base = Baseline(reference_from_supernet(plain), device, arch_batches)
        ours = Ours(module, device, arch_batches, cuda_graphs=graphs)
        if args.partial_channels == 1:
            # TF32 convolutions (cuDNN's default) and bf16 round differently.
            tol = 5e-2 if amp == "bf16" else (1e-2 if device == "cuda" else 1e-4)
            self_check(ours, base, batches[0], device, tol)
        runners = [ours, base]
    else:
        runners = [Ours(module, device, arch_batches, cuda_graphs=graphs)]

    # Interleaved runs (ours, baseline, ours, baseline, ...): a machine whose
    # speed drifts (other tenants, clocks) moves both sides alike, and each
    # run's speedup compares steps timed seconds apart.
    warm = {r.name: warm_up(r, batches, device, warmup) for r in runners}
    secs = {r.name: [] for r in runners}
    repeats = max(1, args.repeats)
    for k in range(repeats):
        for runner in runners:
            secs[runner.name].append(timed(runner, batches, device, steps))
        if len(runners) > 1:
            a, b = secs["ours"][-1], secs["baseline"][-1]
            print(
                f"run {k + 1}/{repeats}  ours {1000 * a:7.1f} ms/step  baseline "
                f"{1000 * b:7.1f} ms/step  speedup {b / a:.2f}"
            )
    results = {}
    for runner in runners:
        sec = statistics.median(secs[runner.name])
        mem = peak_memory_mb(runner, copy.copy(batches[0]), device)
        if graphs and runner.name == "ours":
            mem = max(mem, warm[runner.name])
        ips = cfg["batch"] / sec
        results[runner.name] = (sec, ips, mem)
        print(
            f"{runner.name:9s} {1000 * sec:9.1f} ms/step {ips:9.1f} images/s "
            f"{mem:9.1f} MB peak (median of {repeats} runs)"
        )
        if args.flops:
            from torch.utils.flop_counter import FlopCounterMode

            mapping = {torch.ops.aten.convolution_backward: _conv_backward_flop}
            with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
                runner.step(batches[0])
            print(f"{runner.name:9s} {counter.get_total_flops() / 1e9:9.1f} GFLOP/step")
    sec, ips, mem = results["ours"]
    if args.ours_only:
        print(f"images_per_s={ips:.2f} peak_mem_mb={mem:.1f}")
        return
    b_mem = results["baseline"][2]
    if device == "cpu" and not args.no_rss:
        rss = {side: _rss_growth(side, argv) for side in ("ours", "baseline")}
        print(
            f"imports {_IMPORT_RSS_MB:.0f} MB max RSS (torch, skorch, skdarts; both "
            f"sides); above it: rss_growth_mb ours={rss['ours']:.1f} "
            f"baseline={rss['baseline']:.1f} ratio={rss['ours'] / rss['baseline']:.3f}"
        )
    ratios = [b / a for a, b in zip(secs["ours"], secs["baseline"])]
    print(
        f"speedup={statistics.median(ratios):.2f} memory_ratio={mem / b_mem:.3f}"
        + (f" (median of {repeats} interleaved runs)" if repeats > 1 else "")
    )


def _rss_growth(side: str, argv) -> float:
    """Peak RSS growth (MiB) of one side's steps, in a fresh child process."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args, "--rss-side", side],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1].split("=")[1])


def _phase_times(module, batch, arch_batch, steps):
    """Median ms of the step's phases, each timed on its own: the alpha step's
    forward and backward (weights frozen, as ``SearchNet`` does), the weight
    step's, and clipping + SGD over the weights."""
    crit = torch.nn.CrossEntropyLoss()
    weights = module.weight_parameters()
    # lr 0: weights kept; fused, as SearchNet builds it on the CPU.
    opt = torch.optim.SGD(weights, lr=0.0, momentum=0.9, fused=True)
    arch = perturb_arch_weights(module.arch_weights(), EPSILON)
    out = {}

    def run(frozen, x, y, kw):
        for p in weights:
            p.requires_grad_(not frozen)
        t0 = time.perf_counter()
        loss = crit(module(x, **kw), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        for p in module.parameters():
            p.grad = None
        return t1 - t0, t2 - t1

    module.train()
    for name, frozen, (x, y), kw in (
        ("alpha step", True, arch_batch, {}),
        ("weight step", False, batch, {"arch_weights": arch}),
    ):
        times = [run(frozen, x, y, kw) for _ in range(steps + 1)][1:]
        out[f"{name} forward"] = statistics.median(t[0] for t in times)
        out[f"{name} backward"] = statistics.median(t[1] for t in times)
    for p in weights:
        p.requires_grad_(True)
        p.grad = torch.zeros_like(p)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(weights, 5.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    out["clip + SGD"] = statistics.median(times[1:])
    for p in weights:
        p.grad = None
    return {k: 1000 * v for k, v in out.items()}


def _profile(args) -> None:
    """Print where our step's time goes, at 1 thread and at ``--threads``.

    Phases are timed each on its own (median of ``--steps``, then of three
    rounds that alternate the thread counts); operators come
    from ``torch.profiler`` over ``--steps`` whole steps (self CPU time of the
    calling thread, which includes the time it waits for the other threads of
    a parallel operator). The ratio column is 1-thread time over N-thread
    time: how well an operator uses the extra cores.
    """
    import warnings

    from torch.profiler import ProfilerActivity, profile

    warnings.filterwarnings("ignore", message=".*allocated before the profiling")
    cfg = _config(args)
    torch.manual_seed(args.seed)
    module = Supernet(**_arch(cfg))
    batches, arch_batches = make_all_batches(cfg, "cpu", args.seed)
    runner = Ours(module, "cpu", arch_batches)
    steps = args.steps or CPU_STEPS
    threads = sorted({1, args.threads})
    print(f"profile config={args.config} {cfg} steps={steps} threads={threads}")
    runs = {t: [] for t in threads}
    for t in threads:
        torch.set_num_threads(t)
        warm_up(runner, batches, "cpu", args.warmup or 2)
    # Thread counts alternate (3 rounds, medians): the machine's speed drifts.
    for _ in range(3):
        for t in threads:
            torch.set_num_threads(t)
            step = 1000 * timed(runner, batches, "cpu", steps)
            runs[t].append(
                (step, _phase_times(module, batches[0], arch_batches[0], steps))
            )
    step_ms = {t: statistics.median(r[0] for r in runs[t]) for t in threads}
    phases = {
        t: {k: statistics.median(r[1][k] for r in runs[t]) for k in runs[t][0][1]}
        for t in threads
    }
    ops = {}
    for t in threads:
        torch.set_num_threads(t)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in itertools.islice(itertools.cycle(batches), steps):
                runner.step(b)
        ops[t] = {
            e.key: e.self_cpu_time_total / 1000 / steps for e in prof.key_averages()
        }
    hi, lo = threads[-1], threads[0]

    def row(label, by_thread, extra=""):
        values = "".join(f"{by_thread[t]:11.1f}" for t in threads)
        ratio = f"{by_thread[lo] / by_thread[hi]:7.2f}" if hi != lo else ""
        print(f"{label[:33]:34s}{values}{ratio}{extra}")

    head = "".join(f"{f'{t} thr ms':>11s}" for t in threads)
    head += f"{'ratio':>7s}" if hi != lo else ""
    print(f"\n{'phase':34s}{head}")
    for name in phases[hi]:
        row(name, {t: phases[t][name] for t in threads})
    row("whole step (unprofiled)", step_ms)
    print(f"\n{'operator (self CPU, ms/step)':34s}{head}{'share':>7s}")
    total = sum(ops[hi].values())
    for key in sorted(ops[hi], key=ops[hi].get, reverse=True)[:20]:
        share = f"{100 * ops[hi][key] / total:6.1f}%"
        row(key, {t: ops[t].get(key, 0.0) for t in threads}, share)
    totals = {t: sum(ops[t].values()) for t in threads}
    print(
        f"{'all operators (profiled)':34s}"
        + "".join(f"{totals[t]:11.1f}" for t in threads)
    )


def _rss_child(args) -> None:
    """Build one side only, run its warm-up and timed steps, print RSS growth."""
    torch.set_num_threads(args.threads)
    cfg = _config(args)
    torch.manual_seed(args.seed)
    arch = _arch(cfg)
    batches, arch_batches = make_all_batches(cfg, "cpu", args.seed)
    if args.rss_side == "ours":
        module = Supernet(
            **arch,
            partial_channels=args.partial_channels,
            checkpointing=args.checkpointing,
        )
        runner = Ours(module, "cpu", arch_batches)
    else:
        runner = Baseline(
            reference_from_supernet(Supernet(**arch)), "cpu", arch_batches
        )
    warm_up(runner, batches, "cpu", args.warmup or 1)
    timed(runner, batches, "cpu", args.steps or CPU_STEPS)
    print(f"rss_growth_mb={_peak_rss_mb() - _IMPORT_RSS_MB:.1f}")


if __name__ == "__main__":
    main()
