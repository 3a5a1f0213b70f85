"""The classifier's parameter constraints (scikit-learn's parameter validation)."""

from __future__ import annotations

import numbers
import os

from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

__all__ = ["PARAMETER_CONSTRAINTS"]

#: ``SupernetSearchClassifier._parameter_constraints``: what ``fit`` accepts
#: for each parameter.
PARAMETER_CONSTRAINTS: dict = {
    "search_space": [StrOptions({"darts", "s1", "s2", "s3", "s4"})],
    "init_channels": [Interval(numbers.Integral, 1, None, closed="left")],
    "n_cells": [Interval(numbers.Integral, 1, None, closed="left")],
    "n_nodes": [Interval(numbers.Integral, 1, None, closed="left")],
    "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
    "final_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
    "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
    "lr": [Interval(numbers.Real, 0, None, closed="neither")],
    "lr_min": [Interval(numbers.Real, 0, None, closed="left")],
    "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
    "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
    "arch_lr": [Interval(numbers.Real, 0, None, closed="left")],
    "arch_weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
    "arch_split": [Interval(numbers.Real, 0, 1, closed="neither")],
    "smoothing": [StrOptions({"random", "adversarial"}), None],
    "epsilon": [Interval(numbers.Real, 0, None, closed="left")],
    "grad_clip": [Interval(numbers.Real, 0, None, closed="neither"), None],
    "partial_channels": [Interval(numbers.Integral, 1, None, closed="left")],
    "checkpointing": ["boolean"],
    "cuda_graphs": ["boolean"],
    "image_shape": [tuple, list, None],
    "image_size": [StrOptions({"prior"}), numbers.Integral, tuple, list, None],
    "num_workers": [Interval(numbers.Integral, 0, None, closed="left")],
    "warm_start": ["boolean", StrOptions({"auto"}), object],
    "warm_lr": [Interval(numbers.Real, 0, None, closed="neither"), None],
    "warm_arch_warmup_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
    "warm_epsilon_start": [Interval(numbers.Real, 0, None, closed="left"), None],
    "warm_head": [StrOptions({"probe", "fresh"})],
    "callbacks": [list, None],
    "checkpoint_dir": [str, os.PathLike, None],
    "checkpoint_every": [Interval(numbers.Integral, 1, None, closed="left")],
    "device": [StrOptions({"auto", "cpu", "cuda", "mps"}), str],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "accelerator": [None, HasMethods(["prepare", "backward", "unwrap_model"])],
}
