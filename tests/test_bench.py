"""Smoke tests of the `python -m bench` harness on its tiny configuration (no timing checks)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STRICT = {
    "JAX_NUMPY_RANK_PROMOTION": "raise",
    "JAX_NUMPY_DTYPE_PROMOTION": "strict",
    "JAX_ENABLE_X64": "1",
}


def _bench(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def _check_environment(env: dict) -> None:
    for key in ("date", "cpu", "cores", "python", "platform", "jax_backend"):
        assert env[key], key
    for package in ("jax", "jaxlib", "optax", "jaxloss"):
        assert env["versions"][package], package
    assert env["preset"] == "tiny"


def test_help_explains_every_option():
    out = _bench("--help")
    for option in ("--full", "--only", "--out", "--tiny", "--no-torch", "quality", "speed"):
        assert option in out


def test_quality(tmp_path):
    # One run for every check (pytest-xdist would repeat a shared fixture on each worker).
    # The strict flags of the test suite, in the child process: the bench must run under them.
    stdout = _bench(
        "--tiny", "--only", "quality", "--no-progress", "--out", str(tmp_path), env=STRICT
    )
    res = json.loads((tmp_path / "quality.json").read_text())
    _check_quality_files(tmp_path, res, stdout)
    _check_nll_pairing_gives_the_numbers_of_cross_entropy(res)
    _check_sigmoid_gradients(res)
    _check_multilabel(res)


def _check_quality_files(out: Path, res: dict, stdout: str) -> None:
    _check_environment(res["environment"])
    assert res["config"]["epochs"] == 2
    for name in res["plots"]:
        assert (out / name).stat().st_size > 0
    assert {"learning_curves.png", "reliability.png", "grad_norms.png"} <= set(res["plots"])
    assert res["tables"]["pairings"] in stdout
    assert (out / "quality.md").read_text().startswith("## quality")
    assert len(res["pairings"]) == 6
    for p in res["pairings"]:
        s = p["summary"]
        assert 0 <= s["test_accuracy"] <= 1 and 0 <= s["ece"] <= 1
        assert s["test_nll"] > 0 and s["grad_norm_epoch1"] > 0
        assert s["epochs_to_target"] is None or 1 <= s["epochs_to_target"] <= 2
        run = p["runs"][0]
        assert len(run["curves"]["test_accuracy"]) == 2
        assert sum(run["calibration"]["bin_count"]) == res["data"]["y_test"][0]
        assert ("frac_two_or_more_above_half" in s) == (p["output"] == "sigmoid")


def _check_nll_pairing_gives_the_numbers_of_cross_entropy(res: dict) -> None:
    ident = res["nll_vs_ce"]
    # The same function of the logits: equal up to float32 rounding (bitwise is recorded).
    assert ident["loss_max_scaled_diff_on_same_logits"] <= 1e-6
    assert ident["trained_metrics_identical_as_printed"]
    first, second = (res["pairings"][i]["summary"] for i in (0, 1))
    for key in ("test_accuracy", "test_nll", "ece", "grad_norm_epoch1"):
        np.testing.assert_allclose(first[key], second[key], rtol=1e-4)


def _check_sigmoid_gradients(res: dict) -> None:
    g = res["sigmoid_grad_norm_epoch1"]
    assert g["one_vs_all_bce"] == res["pairings"][2]["summary"]["grad_norm_epoch1"]
    assert g["squared_error"] == res["pairings"][3]["summary"]["grad_norm_epoch1"]


def _check_multilabel(res: dict) -> None:
    multi = res["multilabel"]
    assert multi["attributes"]["closed loop"] == [0, 4, 6, 8, 9]
    assert set(multi["pos_weight"]) == {"even", "> 4", "prime", "closed loop"}
    assert [m["name"] for m in multi["models"]] == [
        "sigmoid BCE",
        "sigmoid BCE + pos_weight",
        "softmax CE over 16 combinations",
    ]
    for m in multi["models"]:
        assert set(m["summary"]["f1"]) == set(multi["pos_weight"])
        assert 0 <= m["summary"]["subset_accuracy"] <= 1


def test_speed_writes_json_tables_and_plot(tmp_path):
    stdout = _bench("--tiny", "--only", "speed", "--no-progress", "--out", str(tmp_path))
    res = json.loads((tmp_path / "speed.json").read_text())
    _check_environment(res["environment"])
    assert (tmp_path / "ce_time_vs_vocab.png").stat().st_size > 0
    assert res["tables"]["cross_entropy"] in stdout
    cfg = res["config"]
    rows = res["cross_entropy"]
    assert len(rows) == 2 * len(cfg["ce_shapes"]) * len(cfg["dtypes"])
    for r in rows + res["soft_cross_entropy"]:
        assert r["median_s"]["jaxloss"] > 0 and r["median_s"]["optax"] > 0
        assert r["median_s"]["copy"] > 0 and r["ratio_to_optax"]["optax"] == 1
        if r["dtype"] == "float32":
            assert r["max_abs_diff_jaxloss_vs_optax"] < 1e-4
    has_torch = res["torch"] is not None
    assert all(
        (r["median_s"]["torch"] is not None) == has_torch for r in rows if r["dtype"] == "float32"
    )
    fused = res["fused"]
    if "skipped" not in fused:
        assert fused["rows"][0]["name"] == "fused (jaxloss)"
        for r in fused["rows"]:
            assert r["median_s"]["fwd+bwd"] > 0 and r["time_ratio_fwd_bwd"] > 0
            assert r["loss_abs_diff_vs_base"] < 1e-4
            assert r["grad_max_abs_diff_vs_base"] < 1e-4


def test_calibration_and_f1_by_hand():
    from bench import metrics

    p = np.array([[0.85, 0.15], [0.85, 0.15], [0.35, 0.65], [0.65, 0.35]])
    cal = metrics.calibration(np.log(p), np.array([0, 1, 1, 0]), bins=10)
    # Bin (0.8, 0.9]: accuracy 1/2 at confidence 0.85; bin (0.6, 0.7]: accuracy 1 at 0.65.
    assert cal["bin_count"][8] == 2 and cal["bin_count"][6] == 2
    np.testing.assert_allclose(cal["ece"], 0.5 * 0.35 + 0.5 * 0.35)
    pred = np.array([[1, 0], [1, 0], [0, 0]])
    true = np.array([[1, 0], [0, 0], [1, 0]])
    np.testing.assert_allclose(metrics.f1_scores(pred, true), [0.5, 0.0])


def test_sigmoid_log_probs_are_renormalised_sigmoids():
    from bench import metrics

    x = np.array([[2.0, -1.0, 0.5]])
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(np.exp(metrics.class_log_probs(x, "sigmoid")), s / s.sum())


def test_markdown_table_is_aligned():
    from bench import report

    table = report.markdown_table(["name", "x"], [["a", "1.5"], ["long name", "10.25"]])
    lines = table.splitlines()
    assert lines[1] == "| --------- | ----: |"
    assert len({len(line) for line in lines}) == 1
