"""compare.py's live view and parallel coordinates: --watch re-renders a report that reloads
itself in headless Chromium while the sweep runs and stops when it ends; the parallel-coordinates
figure is in the report and decodes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import record
from experiments.analysis.parallel import _axis
from experiments.benchmarks.fake_sweep import make_fake_sweep
from experiments.paths import COMPARE_PY

FACTORS = {"activation": ["relu", "tanh"], "optim.lr": [0.001, 0.01, 0.1]}
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(b)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH "
                                    "(.ci/run installs Debian's chromium)")
PROBE = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><div id="out">none</div>
<iframe id="f" src="report.html" width="1200" height="800"></iframe><script>
var loads = 0, seen = [];
document.getElementById('f').addEventListener('load', function () {
  loads += 1;
  var img = this.contentDocument.querySelector("img[alt='parallel_coordinates']");
  seen.push(img && img.complete ? img.naturalWidth : 0);
  document.getElementById('out').textContent = 'loads=' + loads + ' widths=' + seen.join(',');
});
</script></body></html>"""


def in_chromium(report: Path, tmp: Path, seconds: float) -> tuple[int, list[int]]:
    """(times report.html loaded, parallel_coordinates image widths per load) in `seconds` of
    headless Chromium's virtual time; the probe page sits beside the report (same origin)."""
    probe = report.parent / "probe.html"
    probe.write_text(PROBE)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--allow-file-access-from-files", f"--user-data-dir={tmp / 'profile'}",
           f"--virtual-time-budget={int(seconds * 1000)}", "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    probe.unlink()
    m = re.search(r"loads=(\d+) widths=([\d,]*)", dom)
    assert m, dom[-2000:]
    return int(m.group(1)), [int(w) for w in m.group(2).split(",") if w]


def test_axes_spread_numbers_log_when_they_span_decades_and_levels_evenly() -> None:
    pos, _, labels = _axis(pd.Series([0.001, 0.01, 0.1, 0.01]))
    assert np.allclose(pos, [0, 0.5, 1, 0.5]) and labels == ["0.001", "0.01", "0.1"]
    pos, _, _ = _axis(pd.Series([2, 4, 6]))
    assert np.allclose(pos, [0, 0.5, 1])
    pos, _, labels = _axis(pd.Series(["tanh", "relu", "tanh"]))
    assert labels == ["relu", "tanh"] and np.allclose(pos, [1, 0, 1])
    pos, _, _ = _axis(pd.Series([True, False, True]))
    assert sorted(set(pos)) == [0.0, 1.0]


def _compare(*args: str | Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(COMPARE_PY), *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@needs_chromium
def test_watch_rerenders_a_live_sweep_that_reloads_itself_then_stops(tmp_path: Path) -> None:
    sweep = make_fake_sweep(tmp_path / "sweep", 12, 6, factors=FACTORS, p_diverged=0,
                            p_failed=0, status_of={5: "running"})
    running = sweep / "5"
    launch = sweep / record.LAUNCH / "x" / "launch.json"  # a launch in progress
    launch.parent.mkdir(parents=True)
    launch.write_text("{}")
    report = sweep / "compare" / "report.html"
    proc = _compare("--watch", "1", sweep, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if report.exists() and "http-equiv='refresh'" in report.read_text():
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        runs = pd.read_csv(sweep / "compare" / "runs.csv")
        assert "running" in set(runs["status"])  # the running run is in, partial curve and all
        loads, widths = in_chromium(report, tmp_path, 4.5)
        assert loads >= 2, "the live page did not reload itself"
        assert widths and all(w > 0 for w in widths)

        # the sweep ends: the run completes, the launch record goes; watching stops
        s = json.loads((running / record.SUMMARY).read_text())
        (running / record.SUMMARY).write_text(json.dumps({**s, "status": "completed"}))
        shutil.rmtree(sweep / record.LAUNCH)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "every run has ended" in out and "12 completed" in out
    final = report.read_text()
    assert "http-equiv='refresh'" not in final and "class='live'" not in final
    assert "parallel_coordinates" in final
    loads, widths = in_chromium(report, tmp_path, 3)
    assert loads == 1 and widths[0] > 0  # the final page stays put, its figure decodes


def test_watch_stops_when_nothing_changes_any_more(tmp_path: Path) -> None:
    """A launch killed outright leaves `running` behind: watching gives up after stale_s."""
    from experiments.analysis.watch import watch

    sweep = tmp_path / "sweep"
    launch = sweep / record.LAUNCH / "x" / "launch.json"  # left behind by a killed launch
    launch.parent.mkdir(parents=True)
    launch.write_text("{}")
    calls = []

    class NoRuns(Exception):
        pass

    def render(decorate=None) -> dict:
        calls.append(1)
        raise NoRuns("nothing yet")

    lines: list[str] = []
    assert watch(render, [sweep], 0.05, stale_s=0.2, say=lines.append,
                 no_runs=NoRuns) is None
    assert "nothing changed for 0.2 s: stopped watching" in lines[-1]
    assert len(calls) >= 2 and "waiting for runs" in lines[0]


@pytest.mark.slow
def test_a_watched_report_is_never_missing_or_unmarked_while_it_is_re_rendered(
        tmp_path: Path) -> None:
    """A browser may reload the live page at any moment: between renders and during one, the
    page is there, whole, and reloads itself (each render replaces it in one rename)."""
    sweep = make_fake_sweep(tmp_path / "sweep", 12, 6, factors=FACTORS, p_diverged=0,
                            p_failed=0, status_of={5: "running"})
    report = sweep / "compare" / "report.html"
    proc = _compare("--watch", "0.2", sweep, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not report.exists():
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        reads, bad, renders = 0, [], set()
        end = time.monotonic() + 300  # until two more renders were seen (slow on a busy CI)
        while time.monotonic() < end and len(renders) < 3:
            try:
                text = report.read_text()
            except FileNotFoundError:
                bad.append("missing")
                continue
            reads += 1
            if "http-equiv='refresh'" not in text or not text.rstrip().endswith("</html>"):
                bad.append(text[:80])
            renders.add(re.search(r"\(last (\d\d:\d\d:\d\d);", text).group(1)
                        if "(last " in text else "")
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.communicate()
    assert reads > 100 and len(renders) >= 3, (reads, renders)  # re-rendered twice meanwhile
    assert not bad, bad[:3]
