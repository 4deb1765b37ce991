"""compare.py: runs on disk -> runs.csv, ranked summary, plots and a report a browser can show."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments import compare, record
from experiments.analysis import aggregate as agg
from experiments.analysis import stats, style
from experiments.analysis.analyse import analyse
from experiments.analysis.load import RunSet, load_runs
from experiments.benchmarks.fake_sweep import make_fake_sweep, make_known_sweep
from experiments.paths import COMPARE_PY, RUN_PY

PY = sys.executable
FACTORS = {"activation": ["relu", "tanh"], "init": ["he", "xavier"]}
PLOTS = ["curves_val_acc.png", "curves_loss.png", "final_by_factor.png",
         "heatmap_activation__init.png", "signal_propagation.png", "layers_over_epochs.png",
         "walltime.png", "parallel_coordinates.png", "pre_activation_percentiles.png",
         "layer_activation_bands.png"]
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(b)), None)


def run_compare(*args: str | Path) -> tuple[int, str, str]:
    """compare.main in process (one matplotlib import for the whole file): rc, out, err."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = compare.main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def raw_finals(sweep: Path, metric: str = "val_acc") -> pd.DataFrame:
    """The oracle: each run's config and final metric read with plain pandas + yaml."""
    rows = []
    for m in sorted(sweep.rglob(record.METRICS)):
        cfg = yaml.safe_load((m.parent / record.CONFIG).read_text())
        summary = json.loads((m.parent / record.SUMMARY).read_text())
        df = pd.read_csv(m)
        rows.append({"run_dir": str(m.parent), "activation": cfg["activation"],
                     "init": cfg["init"], "seed": cfg["seed"], "status": summary["status"],
                     "final": df[metric].iloc[-1], "best_loss": df["val_loss"].min(),
                     "epochs": int(df["epoch"].iloc[-1])})
    return pd.DataFrame(rows)


def check_outputs(sweep: Path, out: Path, n_runs: int) -> None:
    """The checks the issue asks for on any 2-factor x 2-seed sweep (fake or real)."""
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == n_runs
    for col in ["run_dir", "status", "activation", "init", "seed", "final_val_acc",
                "best_val_acc", "final_val_loss", "best_val_loss", "final_train_loss",
                "epochs", "wall_time_s"]:
        assert col in runs.columns, col
    assert "final_epoch" not in runs and "best_lr" not in runs
    raw = raw_finals(sweep)
    merged = runs.merge(raw, on=["activation", "init", "seed"])
    assert len(merged) == n_runs
    assert merged["final_val_acc"].to_numpy() == pytest.approx(merged["final"].to_numpy())
    assert merged["best_val_loss"].to_numpy() == pytest.approx(merged["best_loss"].to_numpy())
    # group means and stds equal pandas on the raw CSVs (completed runs only)
    want = (raw[raw["status"] == "completed"].groupby(["activation", "init"])["final"]
            .agg(["mean", "std", "count"]))
    groups = pd.read_csv(out / "groups.csv").set_index(["activation", "init"])
    got = groups.loc[want.index]
    assert got["mean"].to_numpy() == pytest.approx(want["mean"].to_numpy())
    assert got["std"].to_numpy() == pytest.approx(want["std"].to_numpy())
    assert (got["n"].to_numpy() == want["count"].to_numpy()).all()
    for col in ("mean", "ci_lo", "ci_hi", "n_runs", "n_completed", "n_diverged", "n_failed"):
        assert col in groups.columns, col
    text = (out / "groups.csv").read_text().splitlines()
    head = text[0].split(",")
    for line in text[1:]:  # counts and ranks are written as integers
        cells = dict(zip(head, line.split(","), strict=False))
        assert all("." not in cells[c] for c in ("rank", "n", "n_runs", "n_completed"))
    for name in [*PLOTS, "report.html", "summary.md", "groups.csv"]:
        assert (out / name).stat().st_size > 200, name


def images_in_chromium(report: Path, tmp: Path) -> tuple[int, int]:
    """(loaded, broken) images of report.html as headless Chromium decodes them."""
    page = tmp / "check.html"
    probe = ("<script>window.addEventListener('load',()=>{for(const i of document.images)"
             "i.setAttribute('data-check',i.complete&&i.naturalWidth>0?'ok':'broken');});"
             "</script></body>")
    page.write_text(report.read_text().replace("</body>", probe))
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom",
           page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    return dom.count('data-check="ok"'), dom.count('data-check="broken"')


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ERROR_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
console.error = (...a) => { window.__errors.push(a.join(' ')); };
</script>"""
TABLE_PROBE = """<script>
window.addEventListener('load', () => {
  const t = document.getElementById('runs'), box = document.getElementById('runs-filter');
  const heads = Array.from(t.tHead.rows[0].cells).map(c => c.textContent);
  const col = heads.indexOf('seed');
  const seeds = () => Array.from(t.tBodies[0].rows).map(r => r.cells[col].textContent);
  const shown = () => Array.from(t.tBodies[0].rows).filter(r => r.style.display !== 'none');
  t.tHead.rows[0].cells[col].click(); const asc = seeds();
  t.tHead.rows[0].cells[col].click(); const desc = seeds();
  box.value = 'tanh'; box.dispatchEvent(new Event('input'));
  const filtered = shown().map(r => r.textContent.includes('tanh'));
  box.value = ''; box.dispatchEvent(new Event('input'));
  const res = {asc, desc, filtered, all: shown().length, count: document.getElementById(
    'runs-count').textContent, links: Array.from(t.querySelectorAll('a')).map(a => a.href),
    errors: window.__errors};
  const pre = document.createElement('pre'); pre.id = 'probe-result';
  pre.textContent = JSON.stringify(res); document.body.appendChild(pre);
});
</script>"""


def table_in_chromium(report: Path, tmp: Path) -> dict:
    """Click the per-run table's seed header twice, type a filter, read the links, collect
    console errors, all in headless Chromium; the probe page sits beside the report so its
    relative links resolve as the report's do."""
    import html as html_lib
    import re

    page = report.with_name("_probe.html")
    text = report.read_text()
    page.write_text(text.replace("<head>", "<head>" + ERROR_PROBE, 1)
                    .replace("</body>", TABLE_PROBE + "</body>"))
    try:
        cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom",
               page.as_uri()]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    finally:
        page.unlink()
    m = re.search(r'<pre id="probe-result">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    return json.loads(html_lib.unescape(m.group(1)))


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A fabricated 2 x 2 x 2-seed sweep, all completed, compared once."""
    sweep = make_fake_sweep(tmp_path_factory.mktemp("fake") / "sweep", 8, 6, factors=FACTORS,
                            p_diverged=0, p_failed=0)
    rc, out, err = run_compare(sweep)
    assert rc == 0, err
    return sweep, sweep / "compare", out


def test_fabricated_sweep_outputs_match_pandas_on_the_raw_files(fake) -> None:
    sweep, out, _ = fake
    check_outputs(sweep, out, 8)


def test_factors_are_the_varying_keys_and_seed_is_not_one(fake) -> None:
    sweep, _, stdout = fake
    rs = load_runs([sweep])
    fx = agg.detect_factors(rs)
    assert fx.factors == ["activation", "init"]
    assert "seed" not in fx.varying
    assert "factors: activation, init" in stdout


def test_a_key_that_follows_a_factor_is_an_alias_and_paths_are_not_factors() -> None:
    runs = pd.DataFrame({"optim.name": ["sgd", "adam"] * 4, "optim.momentum": [0.9, None] * 4,
                         "depth": [2, 2, 8, 8] * 2, "seed": [0] * 4 + [1] * 4,
                         "data.path": [f"/d/{i}" for i in range(8)]})
    rs = RunSet(runs=runs, metrics=pd.DataFrame(), layers=pd.DataFrame(),
                config_keys=["depth", "optim.name", "optim.momentum", "seed", "data.path"],
                swept_keys=["optim", "depth", "seed"])
    fx = agg.detect_factors(rs)
    assert fx.factors == ["optim.name", "depth"]  # swept keys first, group optim -> optim.name
    assert fx.aliases == {"optim.momentum": "optim.name"}
    assert set(fx.varying) == {"optim.name", "depth", "optim.momentum", "data.path"}


def test_summary_ranks_groups_and_names_no_best_without_a_test(fake) -> None:
    _, out, stdout = fake
    md = (out / "summary.md").read_text()
    groups = pd.read_csv(out / "groups.csv")
    assert groups["mean"].is_monotonic_decreasing  # val_acc: higher is better
    assert groups["rank"].tolist() == list(range(1, len(groups) + 1))
    assert (groups["ci_lo"].isna() & groups["ci_hi"].isna()).all()  # 2 seeds: no interval
    best = groups.iloc[0]
    assert f"range {best['min']:.4g}–{best['max']:.4g}, n < 3: no interval" in md
    assert "Best:" not in md and "Best:" not in stdout  # 2 seeds: no paired test possible
    for _, r in groups.iterrows():  # the report prints groups.csv's numbers
        assert f"| {r['rank']} | {r['activation']} | {r['init']} | {r['mean']:.4g} |" in md
    lead = f"ranks first with val_acc {best['mean']:.4g}"
    assert lead in md and lead in stdout
    assert md.count("| 1 |") >= 1 and "diverged" in md


def test_report_is_self_contained(fake) -> None:
    _, out, _ = fake
    html = (out / "report.html").read_text()
    assert html.count("<img src='data:image/png;base64,") == len(PLOTS)
    assert "src='http" not in html and "href='http" not in html and "<script src" not in html
    assert "<b>layers_over_epochs.png</b>: Per hidden layer" in html
    assert html.count("<a href='../") == 8  # every run links to its folder


def test_layers_over_epochs_are_seed_means_of_hidden_layers_of_completed_runs(tmp_path: Path) -> None:
    sweep = make_fake_sweep(tmp_path / "s", 8, 4, factors={**FACTORS, "depth": [3]},
                            status_of={0: "diverged"}, p_diverged=0, p_failed=0)
    rs = load_runs([sweep])
    got = agg.layer_curves(rs, rs.runs, ["activation"]).set_index(["activation", "layer", "epoch"])
    rows = []
    for m in sorted(sweep.rglob(record.LAYERS)):
        if json.loads((m.parent / record.SUMMARY).read_text())["status"] != "completed":
            continue
        cfg = yaml.safe_load((m.parent / record.CONFIG).read_text())
        rows.append(pd.read_csv(m).assign(activation=cfg["activation"]))
    raw = pd.concat(rows)
    raw = raw[raw["layer"] < 3]  # fc3 is the output layer
    want = raw.groupby(["activation", "layer", "epoch"])[["dead_or_saturated_frac", "act_mean"]]
    assert list(got.index) == list(want.mean().index)
    for col in ("dead_or_saturated_frac", "act_mean"):
        assert got[col].to_numpy() == pytest.approx(want.mean()[col].to_numpy())
    assert got["n"].to_numpy().tolist() == want.size().to_numpy().tolist()
    assert set(got["n"]) == {3, 4}  # 2 inits x 2 seeds per activation; run 0 diverged


TEXT_CHECK_FACTORS = [{"init": ["he", "xavier", "normal"]},
                      {"activation": ["relu", "sigmoid"]},  # the demo's regression study
                      {"activation": ["relu", "sigmoid"], "init": ["he", "xavier"],
                       "depth": [2, 8], "optim.weight_decay": [0.0, 0.0001]}]


@pytest.mark.parametrize("factors", TEXT_CHECK_FACTORS, ids=["1 factor", "2 levels", "4 factors"])
def test_every_text_fits_inside_its_figure_and_titles_clear_the_legend(
        factors: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without bbox_inches="tight": the layout alone keeps titles, labels and legends on the
    canvas, and neither the wrapped title nor a panel's title runs under a legend."""
    from matplotlib.text import Text

    real_save, seen = style.PlotSpec.save, []

    def checked_save(self: style.PlotSpec, fig, name: str) -> Path:
        style.fit_title(fig)
        fig.draw_without_rendering()
        r = fig.canvas.get_renderer()
        width, height = fig.bbox.width, fig.bbox.height
        texts = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label,
                                                 *ax.texts)]
        texts += [t for leg in fig.legends for t in (leg.get_title(), *leg.get_texts())]
        texts += [t for t in fig.findobj(Text) if t.get_text() == fig.get_suptitle()]
        texts = [t for t in texts if t.get_visible() and t.get_text().strip()]
        for t in texts:
            b = t.get_window_extent(r)
            assert b.x0 >= -1 and b.x1 <= width + 1 and b.y0 >= -1 and b.y1 <= height + 1, \
                (name, t.get_text(), b.bounds, (width, height))
        title = [t for t in texts if t.get_text() == fig.get_suptitle()]
        panel_titles = [ax.title for ax in fig.axes if ax.title.get_text().strip()]
        for leg in fig.legends:
            assert not any(t.get_window_extent(r).overlaps(leg.get_window_extent(r))
                           for t in title + panel_titles), name
        seen.append(name)
        return real_save(self, fig, name)

    monkeypatch.setattr(style.PlotSpec, "save", checked_save)
    n = 2 * len(list(itertools.product(*factors.values())))
    sweep = make_fake_sweep(tmp_path / "s", n, 4, factors=factors, p_diverged=0, p_failed=0)
    rc, _, err = run_compare(sweep)
    assert rc == 0, err
    assert "layers_over_epochs" in seen and "final_by_factor" in seen
    assert len([s for s in seen if s.startswith("heatmap_")]) == len(factors) * (len(factors) - 1) // 2


def test_a_title_that_runs_under_the_legend_is_rewrapped_left_of_it() -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.8), layout="constrained")
    ax.plot([0, 1], [0, 1], label="activation=sigmoid, a long legend label")
    style.legend(fig, ax.get_lines(), "depth")
    style.suptitle(fig, "final val_acc against wall time: one point per completed run (16 runs)")
    title = [t for t in fig.findobj() if getattr(t, "get_text", lambda: "")() ==
             fig.get_suptitle()][0]
    fig.draw_without_rendering()
    r = fig.canvas.get_renderer()
    assert title.get_window_extent(r).overlaps(fig.legends[0].get_window_extent(r))
    style.fit_title(fig)
    fig.draw_without_rendering()
    assert "\n" in title.get_text()
    assert title.get_window_extent(r).x1 < fig.legends[0].get_window_extent(r).x0
    plt.close(fig)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium/chromium-browser on PATH "
                    "(.ci/run installs Debian's chromium)")
def test_report_shows_every_image_in_headless_chromium(fake, tmp_path: Path) -> None:
    _, out, _ = fake
    assert images_in_chromium(out / "report.html", tmp_path) == (len(PLOTS), 0)


def test_mixed_statuses_are_listed_and_diverged_runs_count_at_the_worst_value(
        tmp_path: Path) -> None:
    status = {0: "diverged", 1: "failed", 2: "no_summary", 5: "running"}
    sweep = make_fake_sweep(tmp_path / "s", 8, 6, factors=FACTORS, status_of=status)
    rs = load_runs([sweep])
    a = analyse(rs)
    runs = a.table
    assert sorted(runs["status"]) == sorted(["diverged", "failed", "incomplete", "running"]
                                            + ["completed"] * 4)
    done = runs["status"] == "completed"
    init = rs.metrics.loc[rs.metrics["epoch"] == 0, "val_acc"]
    worst = min(init.min(), runs.loc[done, "final_val_acc"].min())
    assert a.worst == pytest.approx(worst)
    diverged = runs["status"] == "diverged"
    assert runs.loc[diverged, "outcome_val_acc"].tolist() == [pytest.approx(worst)]
    failed_late = (runs["status"] == "failed") & (runs["epochs"].fillna(0) >= 1)
    assert runs.loc[failed_late, "outcome_val_acc"].eq(worst).all()
    assert runs.loc[runs["status"].isin(["running", "incomplete"]), "outcome_val_acc"].isna().all()
    g = a.groups.set_index(["activation", "init"])
    want = runs.groupby(["activation", "init"])["outcome_val_acc"].mean()
    assert g.loc[want.index, "mean"].to_numpy() == pytest.approx(want.to_numpy())
    assert g["n_diverged"].sum() == 1 and g["n_failed"].sum() == 1
    assert g["n_running"].sum() == 1 and g["n_other"].sum() == 1 and g["n_runs"].sum() == 8
    assert "1 run diverged, 1 failed, 1 still running and 1 other" in a.verdict


def test_truncated_or_corrupt_csvs_are_skipped_with_a_warning_naming_them(tmp_path: Path) -> None:
    sweep = make_fake_sweep(tmp_path / "s", 8, 6, factors=FACTORS, p_diverged=0, p_failed=0)
    bad = sweep / "3" / record.METRICS
    bad.write_bytes(bad.read_bytes()[:-7])  # cut inside the last row
    garbled = sweep / "4" / record.METRICS
    garbled.write_text(garbled.read_text().replace("0.1,", "0.1x,", 1))
    lay = sweep / "5" / record.LAYERS
    lay.write_bytes(lay.read_bytes()[:-3])
    summ = sweep / "6" / record.SUMMARY
    summ.write_text('{"status": "comp')
    rc, _, err = run_compare(sweep)
    assert rc == 0, err
    assert str(summ) in err
    assert str(bad) in err and "truncated" in err
    assert str(garbled) in err and "non-numeric" in err
    assert str(lay) in err
    runs = pd.read_csv(sweep / "compare" / "runs.csv")
    assert len(runs) == 8 and runs.loc[runs["run_dir"] == str(sweep / "6"), "status"].item() \
        == "incomplete"
    assert sorted(runs.loc[runs["status"] == "corrupt", "run_dir"]) == [str(sweep / "3"),
                                                                         str(sweep / "4")]
    assert runs.loc[runs["status"] == "corrupt", "final_val_acc"].isna().all()


def test_empty_dir_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    p = subprocess.run([PY, str(COMPARE_PY), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "no runs found" in p.stderr
    assert not (tmp_path / "compare").exists()


def test_filter_selects_runs_and_one_matching_nothing_exits_2(fake, tmp_path: Path) -> None:
    sweep, _, _ = fake
    rc, _, err = run_compare(sweep, "--filter", "activation == 'relu' and data.name == "
                             "'spirals' and optim.lr > 0.01", "--out", tmp_path / "relu")
    assert rc == 0, err
    runs = pd.read_csv(tmp_path / "relu" / "runs.csv")
    raw = raw_finals(sweep)
    assert sorted(runs["run_dir"]) == sorted(raw.loc[raw["activation"] == "relu", "run_dir"])
    assert "activation" not in runs.columns  # no longer varies
    rc, _, err = run_compare(sweep, "--filter", "depth > 100", "--out", tmp_path / "none")
    assert rc == 2 and "matched none of the 8 runs" in err
    rc, _, err = run_compare(sweep, "--filter", "nosuchkey == 1", "--out", tmp_path / "bad")
    assert rc == 2 and "not a valid pandas query" in err


def test_bad_metric_or_grouping_key_exits_2_naming_the_choices(fake, tmp_path: Path) -> None:
    sweep, _, _ = fake
    rc, _, err = run_compare(sweep, "--metric", "val_bogus", "--out", tmp_path)
    assert rc == 2 and "val_loss" in err
    rc, _, err = run_compare(sweep, "--by", "colour", "--out", tmp_path)
    assert rc == 2 and "activation" in err


def test_regression_defaults_to_val_mse_lower_is_better(tmp_path: Path) -> None:
    sweep = make_fake_sweep(tmp_path / "s", 8, 5, factors=FACTORS, task="regression",
                            p_diverged=0, p_failed=0)
    rc, out, err = run_compare(sweep, "--by", "init", "--facet", "none")
    assert rc == 0, err
    assert "metric val_mse" in out and "lines by init, one panel" in out
    groups = pd.read_csv(sweep / "compare" / "groups.csv")
    assert groups["mean"].is_monotonic_increasing
    assert (sweep / "compare" / "curves_val_mse.png").exists()
    runs = pd.read_csv(sweep / "compare" / "runs.csv")
    assert {"final_val_r2", "best_val_r2", "best_val_mse"} <= set(runs.columns)


def test_no_argument_takes_the_newest_sweep_and_says_which(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    old = make_fake_sweep(tmp_path / "outputs" / "sweeps" / "b_old", 4, 3, factors=FACTORS)
    new = make_fake_sweep(tmp_path / "outputs" / "sweeps" / "a_new", 4, 3, factors=FACTORS)
    os.utime(old / "multirun.yaml", (1e9, 1e9))
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_compare()
    assert rc == 0, err
    assert f"newest sweep: {Path('outputs/sweeps/a_new')}" in out
    assert (new / "compare" / "report.html").exists() and not (old / "compare").exists()


def test_no_argument_and_no_outputs_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_compare()
    assert rc == 2 and "no runs found" in err


def test_help_explains_every_option_with_an_example() -> None:
    p = subprocess.run([PY, str(COMPARE_PY), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    for opt in ("--metric", "--by", "--facet", "--filter", "--out", "--force", "examples:"):
        assert opt in p.stdout
    assert "--filter \"depth >= 8 and batchnorm == true\"" in p.stdout
    assert "--metric test_acc" in p.stdout


@pytest.mark.slow
def test_real_tiny_sweep_end_to_end(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cmd = [PY, str(RUN_PY), "-m", "activation=relu,tanh", "init=he,xavier", "seed=0,1",
           "epochs=3", "data=moons", "gradcheck=false", f"hydra.sweep.dir={sweep}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    rc, out, err = run_compare(sweep)
    assert rc == 0, err
    assert "factors: activation, init;" in out
    check_outputs(sweep, sweep / "compare", 8)
    if CHROMIUM:
        assert images_in_chromium(sweep / "compare" / "report.html", tmp_path) == (len(PLOTS), 0)


# ---------------------------------------------------------------- known truths (issue 9)

def known(tmp: Path, cells: dict[tuple, list], keys: tuple[str, ...], **kw) -> Path:
    """A sweep from {levels: [final or (status, final) per seed]}."""
    runs = []
    for levels, per_seed in cells.items():
        for seed, v in enumerate(per_seed):
            status, final = v if isinstance(v, tuple) else ("completed", v)
            runs.append({"levels": dict(zip(keys, levels, strict=True)), "seed": seed,
                         "status": status, "final": final, "stop": 3 if status != "completed"
                         else None})
    return make_known_sweep(tmp, runs, **kw)


def test_a_factor_with_no_effect_is_reported_as_no_effect_and_its_levels_tied(
        tmp_path: Path) -> None:
    seeds = [0.91, 0.88, 0.93, 0.90]  # identical training whatever gradcheck says
    sweep = known(tmp_path / "s", {(True,): seeds, (False,): seeds}, ("gradcheck",))
    a = analyse(load_runs([sweep]))
    assert a.fx.factors == ["gradcheck"]
    assert a.groups["call"].tolist() == ["tied for best", "tied for best"]
    assert "gradcheck has no detectable effect" in a.verdict
    assert "Best:" not in a.verdict and "matters most" not in a.verdict
    assert a.importance["eta2"].tolist() == [0.0]


def test_exact_and_near_exact_ties_are_ties_not_a_best(tmp_path: Path) -> None:
    base = [0.9, 0.8, 0.85, 0.95]
    sweep = known(tmp_path / "s", {("float32",): base, ("float64",): [v + 1e-16 for v in base]},
                  ("dtype",))
    a = analyse(load_runs([sweep]))
    assert "Best:" not in a.verdict and "No single best" in a.verdict
    assert "dtype has no detectable effect" in a.verdict


def test_survivors_do_not_win_diverged_runs_count_at_the_worst_value(tmp_path: Path) -> None:
    sweep = known(tmp_path / "s", {("A",): [0.90, 0.90, 0.90],
                                   ("B",): [("diverged", 0.5), ("diverged", 0.5), 0.99]},
                  ("level",))
    a = analyse(load_runs([sweep]))
    g = a.groups.set_index("level")
    assert g.loc["A", "rank"] == 1 and g.loc["B", "rank"] == 2
    assert g.loc["B", "mean_completed"] == pytest.approx(0.99)  # the survivor alone
    assert g.loc["B", "mean"] == pytest.approx((0.1 + 0.1 + 0.99) / 3)  # worst seen: 0.1 at init
    assert g.loc["B", "n_diverged"] == 2 and g.loc["B", "n_runs"] == 3
    assert "ranks first with val_acc 0.9" in a.verdict or "Best: level=A" in a.verdict


def test_an_interaction_only_design_is_described_as_an_interaction(tmp_path: Path) -> None:
    noise = [0.0, 0.01, -0.01, 0.005]
    cells = {("normal", False): [0.36 + e for e in noise], ("normal", True): [0.93 + e for e in noise],
             ("he", False): [0.93 + e for e in noise], ("he", True): [0.93 + e for e in noise]}
    sweep = known(tmp_path / "s", cells, ("init", "batchnorm"))
    a = analyse(load_runs([sweep]))
    assert "Interaction: batchnorm matters only with init=normal" in a.verdict
    pair = a.importance[a.importance["factors"].map(len) == 2].iloc[0]
    mains = a.importance[a.importance["factors"].map(len) == 1]
    assert pair["eta2"] == pytest.approx(mains["eta2"].min())  # 2x2: as large as each main


def test_confounded_sweeps_get_no_main_effect_claim(tmp_path: Path) -> None:
    a_dir = known(tmp_path / "a", {(2,): [0.9, 0.91, 0.92], (4,): [0.8, 0.81, 0.82]}, ("depth",),
                  n_epochs=5)
    b_dir = known(tmp_path / "b", {(8,): [0.5, 0.51, 0.52]}, ("depth",), n_epochs=9)
    a = analyse(load_runs([a_dir, b_dir]))
    assert "sweep" in a.fx.factors and "depth" in a.fx.factors
    assert ("sweep", "depth") in a.confounded or ("depth", "sweep") in a.confounded
    assert "confounded" in a.verdict and "no main-effect claim" in a.verdict
    assert "matters most is depth" not in a.verdict and "matters most is sweep" not in a.verdict
    assert a.fx.aliases.get("epochs") == "sweep"  # epochs only follows the sweep
    assert "epochs follows sweep one-to-one" in a.verdict


def test_every_interval_of_an_accuracy_stays_in_0_1_and_n2_shows_a_range(tmp_path: Path) -> None:
    sweep = known(tmp_path / "s", {("a",): [1.0, 0.99, 1.0, 0.97], ("b",): [0.0, 0.02, 0.0, 0.01],
                                   ("c",): [0.6, 0.9]}, ("x",))
    a = analyse(load_runs([sweep]))
    tables = [a.groups, *a.by_factor.values()]
    for t in tables:
        lo, hi = t["ci_lo"].dropna(), t["ci_hi"].dropna()
        assert ((lo >= 0) & (hi <= 1) & (lo <= hi)).all()
    g = a.groups.set_index("x")
    assert pd.isna(g.loc["c", "ci_lo"]) and (g.loc["c", "min"], g.loc["c", "max"]) == (0.6, 0.9)
    assert g.loc["a", "ci_lo"] <= g.loc["a", "mean"] <= g.loc["a", "ci_hi"] <= 1.0
    bands = agg.curve_bands(a.long.assign(x=a.long["x"]), ["x"], ["x"], "val_acc")
    assert ((bands["lo"].dropna() >= 0) & (bands["hi"].dropna() <= 1)).all()


def test_a_run_that_failed_before_epoch_1_and_a_running_run_are_in_runs_csv(
        tmp_path: Path) -> None:
    sweep = make_known_sweep(tmp_path / "s", [
        {"levels": {"init": "he"}, "seed": 0, "final": 0.9},
        {"levels": {"init": "he"}, "seed": 1, "status": "failed_at_start"},
        {"levels": {"init": "xavier"}, "seed": 0, "final": 0.8},
        {"levels": {"init": "xavier"}, "seed": 1, "status": "running", "final": 0.5, "stop": 2}])
    assert not (sweep / "1" / record.METRICS).exists()
    rc, _, err = run_compare(sweep)
    assert rc == 0, err
    runs = pd.read_csv(sweep / "compare" / "runs.csv").set_index("run_dir")
    assert runs.loc[str(sweep / "1"), "status"] == "failed"
    assert runs.loc[str(sweep / "3"), "status"] == "running"
    assert runs.loc[str(sweep / "3"), "final_val_acc"] == pytest.approx(0.5)
    groups = pd.read_csv(sweep / "compare" / "groups.csv").set_index("init")
    assert groups.loc["he", "n_failed"] == 1 and groups.loc["xavier", "n_running"] == 1
    assert groups["n_runs"].sum() == 4
    assert "RuntimeError: fake failure" in (sweep / "compare" / "summary.md").read_text()


def test_final_only_metrics_of_the_summary_rank_with_metric_test_acc(tmp_path: Path) -> None:
    sweep = make_known_sweep(tmp_path / "s", [
        {"levels": {"init": i}, "seed": s, "final": 0.9, "test": t + 0.01 * s}
        for i, t in (("he", 0.7), ("xavier", 0.95)) for s in range(3)])
    a = analyse(load_runs([sweep]), metric="test_acc")
    assert a.groups["init"].tolist() == ["xavier", "he"]
    assert a.groups["mean"].tolist() == pytest.approx([0.96, 0.71])
    assert a.table["final_test_acc"].notna().all()


def test_booleans_filter_as_typed_and_a_constant_by_is_an_error(fake, tmp_path: Path) -> None:
    sweep, _, _ = fake
    rs = load_runs([sweep])
    runs = agg.apply_filter(rs.runs.assign(batchnorm=[True, False] * 4), "batchnorm == true")
    assert len(runs) == 4 and runs["batchnorm"].all()
    assert len(agg.apply_filter(rs.runs, "batchnorm == 'false'")) == 8
    with pytest.raises(Exception, match="has one value in every run; keys that vary: "
                                        "activation, init"):
        analyse(rs, by="depth")


def test_an_empty_layers_csv_is_not_a_warning(tmp_path: Path) -> None:
    sweep = make_fake_sweep(tmp_path / "s", 4, 3, factors={"init": ["he", "xavier"]},
                            p_diverged=0, p_failed=0)
    lay = sweep / "0" / record.LAYERS
    lay.write_text(lay.read_text().splitlines()[0] + "\n")  # log_layers=false: header only
    rs = load_runs([sweep])
    assert not rs.warnings


def test_another_comparison_in_the_out_dir_is_refused_and_stale_figures_go(
        fake, tmp_path: Path) -> None:
    sweep, _, _ = fake
    out = tmp_path / "cmp"
    rc, _, err = run_compare(sweep, "--out", out)
    assert rc == 0, err
    assert (out / "heatmap_activation__init.png").exists()
    relu = ("--out", out, "--filter", "activation == 'relu'")
    rc, _, err = run_compare(sweep, *relu)
    assert rc == 2 and "another set of runs" in err and "--force" in err
    rc, _, err = run_compare(sweep, *relu, "--force")
    assert rc == 0, err
    manifest = json.loads((out / "compare.json").read_text())
    assert len(manifest["runs"]) == 4
    left = sorted(p.name for p in out.glob("*.png"))
    assert left == sorted(p for p in PLOTS if not p.startswith("heatmap_"))  # no stale figure
    rc, _, err = run_compare(sweep, "--out", out)  # the relu runs and more: a grown sweep
    assert rc == 0, err


def test_holm_paired_t_and_bootstrap_against_references() -> None:
    from scipy.stats import ttest_rel

    x, y = [0.9, 0.85, 0.88, 0.92], [0.8, 0.84, 0.83, 0.86]
    assert stats.paired_t(pd.Series(x).to_numpy() - pd.Series(y).to_numpy()) == pytest.approx(
        ttest_rel(x, y).pvalue)
    assert stats.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    lo, hi = stats.boot_mean_interval([pd.Series(x).to_numpy()])
    assert min(x) <= lo < sum(x) / 4 < hi <= max(x)
    assert stats.boot_mean_interval([pd.Series(x[:2]).to_numpy()]) != stats.boot_mean_interval(
        [pd.Series(x).to_numpy()])
    assert all(pd.isna(v) for v in stats.boot_mean_interval([pd.Series(x[:2]).to_numpy()]))
    assert stats.permutation_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium/chromium-browser on PATH "
                    "(.ci/run installs Debian's chromium)")
def test_report_run_table_sorts_filters_and_links_in_headless_chromium(fake, tmp_path: Path
                                                                       ) -> None:
    from urllib.parse import unquote, urlparse

    sweep, out, _ = fake
    res = table_in_chromium(out / "report.html", tmp_path)
    assert res["errors"] == []
    assert res["asc"] == sorted(res["asc"], key=int) and res["desc"] == res["asc"][::-1]
    assert res["asc"] != res["desc"]
    assert len(res["filtered"]) == 4 and all(res["filtered"])  # 4 tanh runs of 8
    assert res["all"] == 8 and res["count"] == "8 of 8 runs"
    targets = sorted(Path(unquote(urlparse(u).path)) for u in res["links"])
    assert targets == sorted((sweep / str(i)).resolve() for i in range(8))
    assert all(t.is_dir() and (t / record.SUMMARY).exists() for t in targets)


def test_jobs_an_interrupted_sweep_never_started_are_reported(tmp_path: Path) -> None:
    sweep = make_known_sweep(tmp_path / "s", [
        {"levels": {"init": i}, "seed": s, "final": 0.8} for i in ("he", "xavier") for s in (0, 1)])
    doc = yaml.safe_load((sweep / "multirun.yaml").read_text())
    doc["hydra"]["callbacks"] = {"launch": {"id": "x", "n_jobs": 6}}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(doc))
    rc, _, err = run_compare(sweep)
    assert rc == 0, err
    assert "2 of its planned jobs left no run dir" in err
    md = (sweep / "compare" / "summary.md").read_text()
    assert "Runs: 4 (4 completed); 2 more were planned but never started" in md


def test_user_text_is_literal_but_log_ticks_stay_math() -> None:
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1, 100, 10000], label=r"init=$\foo$")  # unparseable as math text
    ax.set_yscale("log")
    ax.set_xticks([1, 2, 3], [style.plain(v) for v in (r"$\bar$", "a", "b")])
    style.legend(fig, ax.get_lines(), "level")
    style.suptitle(fig, r"cost in $ and $\foo$")
    style.no_math(fig)
    fig.savefig(io.BytesIO(), format="png")  # raises if any user text were parsed as math
    ticks = ax.yaxis.get_ticklabels()
    assert ticks and all(t.get_parse_math() for t in ticks)  # 10^k drawn as math
    assert not fig.legends[0].get_texts()[0].get_parse_math()
    plt.close(fig)


def test_compare_does_not_import_torch() -> None:
    """compare reads CSVs and draws: torch's import (~2 s) would be a fifth of its time."""
    import subprocess
    import sys

    code = ("import sys, experiments.compare, experiments.analysis.draw; "
            "print(sorted(m for m in ('torch', 'sklearn', 'hydra') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
