"""The smallest search settings that still exercise every part of a fit."""

BASE = dict(
    init_channels=2,
    n_cells=1,
    n_nodes=1,
    search_space="s2",
    max_epochs=1,
    final_epochs=1,
    batch_size=16,
    verbose=0,
    device="cpu",
    random_state=0,
)


def tiny(without=(), **overrides) -> dict:
    """``SupernetSearchClassifier`` keyword arguments for a fit of seconds.

    ``without`` names keys to leave out (e.g. ``random_state`` for tests that
    pass their own).
    """
    return {k: v for k, v in (BASE | overrides).items() if k not in set(without)}
