"""A tqdm progress bar for a job; tqdm is optional and imported lazily."""
from __future__ import annotations

import typing as t

from ..protocol import JobProgress

#: A progress callback: called with each new :class:`~flask_jobify.JobProgress`.
ProgressCallback = t.Callable[[JobProgress], t.Any]


def progress_from_record(record: t.Mapping[str, t.Any]) -> JobProgress:
    """The :class:`~flask_jobify.JobProgress` of a job record."""
    progress = record.get("progress") or {}
    percent = progress.get("percent")
    return JobProgress(
        percent=None if percent is None else float(percent),
        message=progress.get("message"),
    )


class ProgressBar:
    """A tqdm bar from 0 to 100 % with the job's message after it.

    The bar draws on ``stderr`` and only on a terminal (tqdm's
    ``disable=None``), so logs of non-interactive runs stay clean. Use it as
    a progress callback; :meth:`close` it when the job ends.

    :param description: text before the bar (the job id, say).
    :param options: more tqdm options (``file``, ``disable``, ``ncols``...).
    :raises ImportError: when tqdm is not installed; ``pip install
        flask-jobify[progress]`` brings it.

    .. versionadded:: 0.1
    """

    def __init__(self, description: str | None = None, **options: t.Any) -> None:
        try:
            from tqdm import tqdm
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "progress_bar=True needs tqdm: pip install 'flask-jobify[progress]'"
            ) from exc
        self._bar: t.Any = tqdm(**{
            "total": 100,
            "desc": description,
            "unit": "%",
            "disable": None,
            "leave": False,
            "bar_format": "{l_bar}{bar}| {n:.0f}% {postfix}",
            **options,
        })

    def __call__(self, progress: JobProgress) -> None:
        """Show ``progress``."""
        if progress.percent is not None:
            self._bar.update(progress.percent - self._bar.n)
        if progress.message is not None:
            self._bar.set_postfix_str(progress.message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        """Remove the bar."""
        self._bar.close()


__all__ = ["ProgressBar", "ProgressCallback", "progress_from_record"]
