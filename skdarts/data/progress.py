"""Progress bars for long reads, shown only when the work lasts."""

from __future__ import annotations

#: Seconds of work before a progress bar shows (when ``verbose`` allows one).
PROGRESS_DELAY = 0.5


def _progress(iterable, verbose, desc: str, total: int | None = None):
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    # Shown only when the work lasts: small folders stay quiet.
    return tqdm(iterable, desc=desc, total=total, delay=PROGRESS_DELAY, leave=False)
