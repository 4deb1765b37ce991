"""compare.py --watch: re-render the report while a sweep runs; the page reloads itself.

A sweep is live while a launch of it is in progress (`<sweep>/.launch/<id>/launch.json`, which
run.py removes at the end) or one of its runs says `running`; watching ends when neither holds,
or when no run file has changed during `stale_s` seconds of waiting (a launch killed outright
leaves its record behind). The last render has no reload tag.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments import record


def launches_in_progress(paths: list[Path]) -> int:
    """Launch records present under `paths` (a sweep dir, or its parents)."""
    found = set()
    for p in paths:
        for mark in (*p.glob(f"{record.LAUNCH}/*/launch.json"),
                     *p.glob(f"*/{record.LAUNCH}/*/launch.json")):
            found.add(mark.resolve())
    return len(found)


def newest_change(paths: list[Path]) -> float:
    """The latest modification time of a run file (metrics.csv, summary.json) under paths."""
    newest = 0.0
    for p in paths:
        for name in (record.METRICS, record.SUMMARY):
            for f in p.rglob(name):
                try:
                    newest = max(newest, f.stat().st_mtime)
                except OSError:
                    continue
    return newest


def live_html(text: str, seconds: float, note: str) -> str:
    """The report's page made to reload itself every `seconds`, saying so at its top."""
    tag = f"<meta http-equiv='refresh' content='{max(1, round(seconds))}'>"
    banner = (f"<p class='live' style='background:#fff6d6;border-left:4px solid #d90;"
              f"padding:.4em 1em'>{html.escape(note)}</p>")
    return text.replace("<head>", "<head>" + tag, 1).replace("<body>", "<body>" + banner, 1)


def watch(render: Callable[..., dict[str, Any]], paths: list[Path], every: float,
          stale_s: float | None = None, say: Callable[[str], None] = print,
          no_runs: type[Exception] = Exception) -> dict[str, Any] | None:
    """Render every `every` seconds until the sweep has ended; returns the last render.

    `render(decorate)` writes the report with `decorate` applied to its page: the reload tag
    goes in with the page, in one write, so a browser reloading it never lands on a page
    without it while the sweep runs. A render whose marking turns out wrong (the sweep ended,
    or started, while it ran) is redone at once with the right one."""
    stale_s = stale_s if stale_s is not None else max(120.0, 20 * every)
    last: dict[str, Any] | None = None
    seen, quiet = -1.0, 0.0  # newest change seen, seconds waited since it (renders not counted)
    marked, counts = True, "starting"  # whether the next render reloads itself; run counts
    redone = False  # one immediate redo at most, should the state flip back and forth
    while True:
        note = (f"Live: re-rendered every {every:g} s while the sweep runs (last "
                f"{time.strftime('%H:%M:%S')}; {counts}).")
        try:
            last = render((lambda text, note=note: live_html(text, every, note)) if marked
                          else None)
        except no_runs as e:  # nothing written yet: the first job is still starting
            last = None
            say(f"[{time.strftime('%H:%M:%S')}] waiting for runs ({e})")
        status = _statuses(last)
        launches = launches_in_progress(paths)
        changed = newest_change(paths)
        if changed != seen:
            seen, quiet = changed, 0.0
        stale = quiet > stale_s
        live = (launches > 0 or status.get(record.RUNNING, 0) > 0) and not stale
        counts = ", ".join(f"{n} {s}" for s, n in status.items()) or "no runs yet"
        if last is not None and live != marked and not redone:
            marked, redone = live, True
            continue  # the report on disk says live when it is not, or the reverse
        marked, redone = live, False
        if not live:
            why = (f"nothing changed for {stale_s:g} s: stopped watching" if stale
                   else "every run has ended")
            say(f"[{time.strftime('%H:%M:%S')}] {counts}; {why}")
            return last
        say(f"[{time.strftime('%H:%M:%S')}] {counts}; report re-rendered, next in {every:g} s "
            "(Ctrl-C stops watching, not the sweep)")
        time.sleep(every)
        quiet += every


def _statuses(res: dict[str, Any] | None) -> dict[str, int]:
    if not res or "analysis" not in res:
        return {}
    counts = res["analysis"].rs.runs["status"].value_counts()
    return {str(k): int(v) for k, v in counts.items()}
