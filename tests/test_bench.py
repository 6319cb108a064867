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
PAIRING_KEYS = {
    "key",
    "name",
    "output",
    "test_accuracy",
    "test_nll",
    "ece",
    "epochs_to_target",
    "grad_norm_epoch1",
    "frac_two_or_more_above_half",
    "runs",
}
DISTILLATION_KEYS = {
    "key",
    "name",
    "divergence",
    "test_accuracy",
    "test_accuracy_std",
    "test_nll",
    "test_nll_std",
    "ece",
    "ece_std",
    "teacher_agreement",
    "teacher_agreement_std",
    "runs",
}
BASE = "materialised (jaxloss)"
SPEED_KEYS = {"kind", "N", "V", "dtype", "pass", "median_s", "ratio_to_optax", "temp_bytes"}


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
    assert {"XLA_FLAGS", "GLIBC_TUNABLES"} <= set(env["env"])


def _check_report_wrote(out: Path, part: str, res: dict, stdout: str, plots: set[str]) -> None:
    """The report wrote exactly the part's files, printed its Markdown, and renders that
    Markdown again from the JSON alone: the JSON holds the records the tables come from."""
    from bench import report

    assert {p.name for p in out.iterdir()} == {f"{part}.md", f"{part}.json", *plots}
    for name in plots:
        assert (out / name).stat().st_size > 0
    text = (out / f"{part}.md").read_text()
    assert text.startswith(f"## {part}") and text in stdout
    records = {k: v for k, v in res.items() if k != "environment"}
    assert report.MARKDOWN[part](records, res["environment"]) == text


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
    _check_environment(res["environment"])
    plots = {"learning_curves.png", "reliability.png", "grad_norms.png"}
    _check_report_wrote(tmp_path, "quality", res, stdout, plots)
    _check_pairings(res)
    _check_nll_pairing_gives_the_numbers_of_cross_entropy(res, stdout)
    _check_sigmoid_gradients(res)
    _check_multilabel(res, stdout)
    _check_distillation(res, stdout)
    _check_retrieval(res, stdout)
    _check_strips(res, stdout)
    _check_sparse_outputs(res, stdout)


def _check_sparse_outputs(res: dict, stdout: str) -> None:
    from bench import sparse_outputs

    r, cfg = res["sparse_outputs"], res["config"]
    assert [m["key"] for m in r["models"]] == ["ce", "sparsemax", "entmax15", "hinge"]
    assert r["test_size"] == res["data"]["x_test"][0]
    keys = {"key", "name", "runs"} | {k + s for k in sparse_outputs.KEYS for s in ("", "_std")}
    for m in r["models"]:
        assert keys <= set(m), keys - set(m)
        assert [x["seed"] for x in m["runs"]] == cfg["sparse_seeds"]
        assert 0 <= m["test_accuracy"] <= 1 and m["softmax_nll"] > 0
        has_probabilities = m["key"] != "hinge"
        for key in ("own_nll", "label_zero_fraction", "nonzeros"):
            assert (m[key] is not None) == has_probabilities, (m["key"], key)
        if not has_probabilities:
            continue
        assert 1 <= m["nonzeros"] <= 10 and 0 <= m["label_zero_fraction"] <= 1
        assert m["own_nll"] is None or m["own_nll"] >= 0
        np.testing.assert_allclose(m["nonzeros"], np.mean([x["nonzeros"] for x in m["runs"]]))
    ce = r["models"][0]
    # Softmax: every class non-zero, no label at 0, its own NLL the softmax NLL.
    assert ce["nonzeros"] == 10 and ce["label_zero_fraction"] == 0
    np.testing.assert_allclose(ce["own_nll"], ce["softmax_nll"], rtol=1e-6)
    # The same network, seed, batches and epochs as pairing 1: the same model.
    pairing = next(p for p in res["pairings"] if p["key"] == "ce")
    if cfg["sparse_epochs"] == cfg["epochs"] and cfg["sparse_seeds"][0] == cfg["seeds"][0]:
        assert ce["runs"][0]["test_accuracy"] == pairing["runs"][0]["test_accuracy"]
    assert "Sparse outputs and margins" in stdout


def test_sparse_output_scores_by_hand():
    from bench import sparse_outputs

    by_key = {m.key: m for m in sparse_outputs.models()}
    logits = np.array([[3.0, 0.0, -1.0, 0, 0, 0, 0, 0, 0, 0], [1.0, 0.9, 0, 0, 0, 0, 0, 0, 0, 0]])
    labels = np.array([0, 2])
    s = sparse_outputs.scores(by_key["sparsemax"], logits.astype(np.float32), labels)
    # Row 0: sparsemax is one-hot on class 0 (p = 1); row 1: p = (0.55, 0.45, 0, ...), so the
    # label 2 gets 0.
    assert s["test_accuracy"] == 0.5 and s["label_zero_fraction"] == 0.5
    assert s["nonzeros"] == 1.5 and s["own_nll"] == 0.0
    h = sparse_outputs.scores(by_key["hinge"], logits.astype(np.float32), labels)
    assert h["own_nll"] is None and h["nonzeros"] is None and h["softmax_nll"] > 0


def _check_strips(res: dict, stdout: str) -> None:
    m = res["strips"]["model"]
    assert len(m["runs"]) == len(res["config"]["strips_seeds"])
    assert 0 <= m["sequence_accuracy"] <= 1 and m["character_error_rate"] >= 0
    assert "CTC: strips of 3-6 digits" in stdout


def test_strips_are_what_ctc_reads():
    from bench import strips

    images = np.stack([np.full((8, 8), d / 10, np.float32) for d in range(10)])
    s = strips.make_strips(images, np.arange(10), 50, seed=0)
    assert s["frames"].shape == (50, strips.WIDTH, 8 * strips.WINDOW)
    lengths = (s["label_pad"] == 0).sum(1)
    assert lengths.min() >= 3 and lengths.max() <= 6
    kept = (s["frame_pad"] == 0).sum(1)
    assert np.all(kept >= 8 * lengths) and np.all(kept <= strips.WIDTH)
    assert np.all(np.diff(s["label_pad"], axis=1) >= 0)  # right-padded
    logits = np.full((1, 6, 11), -5.0)
    logits[0, np.arange(6), [3, 3, 10, 3, 7, 10]] = 0.0
    assert strips.greedy(logits, np.zeros((1, 6))) == [[3, 3, 7]]
    assert strips.edit_distance([3, 3, 7], [3, 7]) == 1
    assert strips.edit_distance([1, 2, 3], [3, 2, 1]) == 2


def _check_retrieval(res: dict, stdout: str) -> None:
    r = res["retrieval"]
    assert [m["key"] for m in r["models"]] == ["untrained", "softmax", "sigmoid"]
    assert r["test_size"] == res["data"]["x_test"][0]
    for m in r["models"]:
        assert len(m["runs"]) == len(res["config"]["retrieval_seeds"])
        for way in ("top_to_bottom", "bottom_to_top"):
            assert 0 <= m[f"{way}_r1"] <= m[f"{way}_r5"] <= 1
            np.testing.assert_allclose(m[f"{way}_r1"], np.mean([x[f"{way}_r1"] for x in m["runs"]]))
        assert m["temperature"] > 0
        assert (m["bias"] is None) == (m["key"] != "sigmoid")
    assert "Two-tower retrieval" in stdout


def _check_pairings(res: dict) -> None:
    assert res["config"]["epochs"] == 2
    assert [p["key"] for p in res["pairings"]] == ["ce", "nll", "bce", "mse", "smoothing", "focal"]
    for p in res["pairings"]:
        assert PAIRING_KEYS <= set(p), PAIRING_KEYS - set(p)
        assert 0 <= p["test_accuracy"] <= 1 and 0 <= p["ece"] <= 1
        assert p["test_nll"] > 0 and p["grad_norm_epoch1"] > 0
        assert p["epochs_to_target"] is None or 1 <= p["epochs_to_target"] <= 2
        run = p["runs"][0]
        assert len(run["curves"]["test_accuracy"]) == 2
        assert sum(run["calibration"]["bin_count"]) == res["data"]["y_test"][0]
        assert (p["frac_two_or_more_above_half"] is not None) == (p["output"] == "sigmoid")


def _check_nll_pairing_gives_the_numbers_of_cross_entropy(res: dict, stdout: str) -> None:
    ident = res["nll_vs_ce"]
    # The same function of the logits: equal up to float32 rounding (bitwise is recorded).
    assert ident["loss_max_scaled_diff_on_same_logits"] <= 1e-6
    assert "the printed metrics are identical." in stdout
    by_key = {p["key"]: p for p in res["pairings"]}
    for key in ("test_accuracy", "test_nll", "ece", "grad_norm_epoch1"):
        np.testing.assert_allclose(by_key["ce"][key], by_key["nll"][key], rtol=1e-4)


def _check_sigmoid_gradients(res: dict) -> None:
    g = res["sigmoid_grad_norm_epoch1"]
    by_key = {p["key"]: p for p in res["pairings"]}
    assert g["one_vs_all_bce"] == by_key["bce"]["grad_norm_epoch1"]
    assert g["squared_error"] == by_key["mse"]["grad_norm_epoch1"]


def _check_multilabel(res: dict, stdout: str) -> None:
    multi = res["multilabel"]
    assert multi["attributes"]["closed loop"] == [0, 4, 6, 8, 9]
    assert set(multi["pos_weight"]) == {"even", "> 4", "prime", "closed loop"}
    assert [m["name"] for m in multi["models"]] == [
        "sigmoid BCE",
        "sigmoid BCE + pos_weight",
        "softmax CE over 16 combinations",
    ]
    for m in multi["models"]:
        assert set(m["f1"]) == set(multi["pos_weight"])
        np.testing.assert_allclose(m["mean_f1"], np.mean(list(m["f1"].values())))
        assert 0 <= m["subset_accuracy"] <= 1
        assert f"| {m['name']} " in stdout


def _check_distillation(res: dict, stdout: str) -> None:
    distil, cfg = res["distillation"], res["config"]
    setup = distil["setup"]
    assert setup["teacher_train_size"] == res["data"]["y_train"][0]
    assert setup["student_train_size"] == cfg["student_train_size"]
    assert sum(setup["student_train_per_class"]) == cfg["student_train_size"]
    models = distil["models"]
    assert [m["key"] for m in models][:2] == ["teacher", "labels"]
    assert [m["divergence"] for m in models] == [
        None,
        None,
        "forward_kl",
        "forward_kl",
        "reverse_kl",
        "jsd",
    ]
    for m in models:
        assert DISTILLATION_KEYS <= set(m), DISTILLATION_KEYS - set(m)
        assert 0 <= m["test_accuracy"] <= 1 and 0 <= m["ece"] <= 1 and m["test_nll"] > 0
        assert [r["seed"] for r in m["runs"]] == cfg["distill_seeds"]
        assert m["test_accuracy_std"] >= 0
        assert f"| {m['name']} " in stdout
        # The teacher does not score its agreement with itself; every student does.
        if m["key"] == "teacher":
            assert m["teacher_agreement"] is None and m["teacher_agreement_std"] is None
        else:
            assert 0 <= m["teacher_agreement"] <= 1
            np.testing.assert_allclose(
                m["teacher_agreement"], np.mean([r["teacher_agreement"] for r in m["runs"]])
            )


def test_speed(tmp_path):
    stdout = _bench("--tiny", "--only", "speed", "--no-progress", "--out", str(tmp_path))
    res = json.loads((tmp_path / "speed.json").read_text())
    _check_environment(res["environment"])
    plots = {"ce_time_vs_vocab.png", "contrastive_vs_batch.png"}
    _check_report_wrote(tmp_path, "speed", res, stdout, plots)
    cfg = res["config"]
    rows = res["cross_entropy"]
    assert len(rows) == 2 * len(cfg["ce_shapes"]) * len(cfg["dtypes"])
    for r in rows + res["soft_cross_entropy"]:
        assert SPEED_KEYS <= set(r), SPEED_KEYS - set(r)
        assert r["median_s"]["jaxloss"] > 0 and r["median_s"]["optax"] > 0
        assert r["median_s"]["copy"] > 0 and r["ratio_to_optax"]["optax"] == 1
        if r["dtype"] == "float32":
            assert r["max_abs_diff_jaxloss_vs_optax"] < 1e-4
    has_torch = res["torch"] is not None
    assert all(
        (r["median_s"]["torch"] is not None) == has_torch for r in rows if r["dtype"] == "float32"
    )
    assert ("torch ms |" in stdout) == has_torch
    fused = res["fused"]
    if "skipped" not in fused:
        assert fused["rows"][0]["name"] == "fused (jaxloss)"
        for r in fused["rows"]:
            assert r["median_s"]["fwd+bwd"] > 0 and r["time_ratio_fwd_bwd"] > 0
            assert r["loss_abs_diff_vs_base"] < 1e-4
            assert r["grad_max_abs_diff_vs_base"] < 1e-4
    distil = res["fused_distillation"]
    assert [(r["name"], r["dtype"]) for r in distil["rows"]] == [
        (name, dtype) for dtype in cfg["dtypes"] for name in ("fused (jaxloss)", BASE)
    ]
    for r in distil["rows"]:
        assert r["median_s"] > 0 and r["temp_bytes"] > 0
        if r["dtype"] == "float32":  # the same loss, chunked or not
            assert r["loss_abs_diff_vs_base"] < 1e-4 and r["grad_max_abs_diff_vs_base"] < 1e-4
    assert "Fused linear + distillation" in stdout
    pairs = res["contrastive"]["rows"]
    sizes = [(b, True) for b in cfg["contrastive"]] + [
        (b, False) for b in cfg["contrastive_memory"]
    ]
    assert [(r["kind"], r["B"], r["name"]) for r in pairs] == [
        (kind, b, name)
        for kind in ("softmax", "sigmoid")
        for b, _ in sizes
        for name in ("blocked (jaxloss)", "materialised")
    ]
    timed = dict(sizes)
    for r in pairs:
        assert r["temp_bytes"] > 0 and r["matrix_bytes"] == 4 * r["B"] ** 2
        assert (r["median_s"] is not None) == timed[r["B"]]
        if timed[r["B"]]:
            assert r["median_s"] > 0 and r["max_abs_diff_vs_base"] < 1e-4
    ctc = res["ctc"]["rows"]
    names = ["jaxloss", "optax", *(["torch"] if has_torch else [])]
    assert [(r["B"], r["T"], r["K"], r["N"], r["name"]) for r in ctc] == [
        (*shape, name) for shape in cfg["ctc"] for name in names
    ]
    for r in ctc:
        assert r["median_s"] > 0 and (r["temp_bytes"] is None) == (r["name"] == "torch")
        assert r["loss_abs_diff_vs_optax"] < 1e-3 and r["grad_max_abs_diff_vs_optax"] < 1e-4


def test_calibration_by_hand():
    from bench import metrics

    p = np.array([[0.85, 0.15], [0.85, 0.15], [0.35, 0.65], [0.65, 0.35]])
    cal = metrics.calibration(np.log(p), np.array([0, 1, 1, 0]), bins=10)
    # Bin (0.8, 0.9]: accuracy 1/2 at confidence 0.85; bin (0.6, 0.7]: accuracy 1 at 0.65.
    assert cal["bin_count"][8] == 2 and cal["bin_count"][6] == 2
    np.testing.assert_allclose(cal["ece"], 0.5 * 0.35 + 0.5 * 0.35)


def test_classification_and_multilabel_metrics_by_hand():
    from bench import metrics

    p = np.array([[0.5, 0.25, 0.25], [0.125, 0.75, 0.125]])
    m = metrics.classification(np.log(p), np.array([0, 2]))
    np.testing.assert_allclose(m["accuracy"], 0.5)
    np.testing.assert_allclose(m["nll"], -0.5 * (np.log(0.5) + np.log(0.125)))
    pred = np.array([[1, 0], [1, 0], [0, 0]])
    true = np.array([[1, 0], [0, 0], [1, 0]])
    m = metrics.multilabel(pred, true, ["a", "b"])
    # Attribute b has no positives and no predictions: F1 0, not undefined.
    assert m["f1"] == {"a": 0.5, "b": 0.0} and m["mean_f1"] == 0.25
    np.testing.assert_allclose(m["subset_accuracy"], 1 / 3)
    assert metrics.epochs_to_target([0.5, 0.96, 0.97], 0.95) == 2
    assert metrics.epochs_to_target([0.5], 0.95) is None


def test_sigmoid_log_probs_are_renormalised_sigmoids():
    from bench import metrics

    x = np.array([[2.0, -1.0, 0.5]])
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(np.exp(metrics.class_log_probs(x, "sigmoid")), s / s.sum())


def test_table_right_aligns_numbers_and_prints_cells_as_given():
    from bench import report

    rows = [{"name": "a", "t": 0.0004}, {"name": "long name", "t": None}]
    table = report.table(rows, {"name": lambda r: r["name"], "x ms": lambda r: report.ms(r["t"])})
    lines = table.splitlines()
    assert lines[0].startswith("| name ") and lines[1].endswith(":|")
    assert lines[2].endswith(" 0.40 |") and lines[3].endswith(" - |")
    assert len({len(line) for line in lines}) == 1


def test_distillation_student_loss_mixes_labels_and_teacher():
    import jax
    import jax.numpy as jnp

    import jaxloss
    from bench import distillation
    from bench.config import QualityConfig

    rng = np.random.default_rng(0)
    x, teacher = (jnp.asarray(rng.standard_normal((4, 10)), jnp.float32) for _ in range(2))
    y = jnp.asarray([0, 3, 9, 3], jnp.int32)
    ce = jaxloss.softmax_cross_entropy_with_integer_labels(x, y, reduction="mean")
    for way in distillation.ways(QualityConfig()):
        loss = distillation.loss_fn(way, 0.25)
        if way.divergence is None:
            np.testing.assert_allclose(loss(x, y, teacher), ce, rtol=1e-6)
            continue
        d = jaxloss.distillation_loss(
            x, teacher, divergence=way.divergence, temperature=way.temperature, reduction="mean"
        )
        np.testing.assert_allclose(loss(x, y, teacher), 0.75 * ce + 0.25 * d, rtol=1e-6)
        # The teacher is a constant of the student's loss.
        assert not jnp.any(jax.grad(loss, argnums=2)(x, y, teacher))


def test_retrieval_recall_by_hand():
    from bench import retrieval

    # Row 0's match is the most similar; row 1's is second; row 2's is last of three.
    sim = np.array([[0.9, 0.1, 0.2], [0.8, 0.5, 0.1], [0.3, 0.2, 0.1]])
    assert retrieval.recall(sim, 1) == 1 / 3
    assert retrieval.recall(sim, 2) == 2 / 3
    assert retrieval.recall(sim, 3) == 1.0
    assert retrieval.recall(sim.T, 1) == 2 / 3  # by column: 0.9 and 0.5 lead theirs, 0.1 not


def test_exchange_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.exchange", "--tiny", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "XLA_FLAGS": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads((tmp_path / "exchange.json").read_text())["rows"]
    assert {(r["devices"], r["kind"], r["exchange"]) for r in rows} == {
        (n, k, e) for n in (1, 2, 4, 8) for k in ("softmax", "sigmoid") for e in ("ring", "gather")
    }
    assert all(r["temp_bytes"] > 0 and r["median_s"] > 0 for r in rows)
    assert "| softmax | 64  | 8" in proc.stdout
