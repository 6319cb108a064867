"""``python -m bench.optax_suite``: optax's own loss tests, run from the installed optax wheel
with every public ``optax.losses`` function that jaxloss offers under the same name swapped in.

The tests are optax's (``optax/losses/_*_test.py``), unchanged and unadapted: jaxloss's
deliberate differences (keyword-only options, an int ``axis``, ``where`` as the classes to
include, float32 results from half-precision inputs, ``reduction``, ``kl_divergence``
normalising its first argument) fail the tests that rely on optax's behaviour, and each failure
is listed with its first line and a guessed cause. ``--no-swap`` runs the same tests on optax
alone: the baseline, where all should pass.

The swap is made by this module acting as a pytest plugin (``-p bench.optax_suite``) in a
pytest subprocess, before the test modules are imported: the name is replaced in ``optax``,
``optax.losses`` and the private module as the tests import it (``optax.losses._classification``
and its ``sys.modules`` entry become a copy of the module with the swapped names). The module
that optax's own functions run in is left alone, so an optax function that jaxloss does not
offer (``poly_loss_cross_entropy``) still calls optax's ``softmax_cross_entropy``; the originals
stay reachable as ``<copy>.__optax_module__.<name>``. A test involves a function when its source
(with its decorators, its class's ``setUp`` and the test module's helpers it calls) or its
parameters name it; "no jaxloss" counts the tests that involve none that jaxloss offers (the
same tests in both modes).

The subprocess runs outside the repository (its own ``--rootdir`` and empty ``pytest.ini``), so
neither the repository's conftest (strict JAX flags) nor its pytest options apply.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

FILES = (
    "classification",
    "fenchel_young",
    "ranking",
    "regression",
    "segmentation",
    "self_supervised",
    "smoothing",
)
ENV_SWAP = "JAXLOSS_OPTAX_SUITE_SWAP"  # "1": swap, "0": optax alone (the plugin's switch)
ENV_OUT = "JAXLOSS_OPTAX_SUITE_OUT"  # where the plugin writes its records (JSON)
REPO = Path(__file__).resolve().parent.parent
# Environment that would change how jax behaves in the subprocess.
_DROP_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "JAX_ENABLE_X64", "JAX_NUMPY_RANK_PROMOTION")
_DROP_ENV += ("JAX_NUMPY_DTYPE_PROMOTION", "JAX_DEFAULT_MATMUL_PRECISION")

Record = dict[str, Any]


# --------------------------------------------------------------------------------------------
# The swap.


def optax_test_files(names: Iterable[str] = FILES) -> list[Path]:
    """The installed optax's ``optax/losses/_<name>_test.py`` files."""
    import optax.losses

    root = Path(optax.losses.__file__).parent
    return [root / f"_{name}_test.py" for name in names]


def swappable() -> list[str]:
    """The public names of ``optax.losses`` that jaxloss offers."""
    import optax.losses

    import jaxloss

    public = getattr(optax.losses, "__all__", None) or dir(optax.losses)
    return sorted(n for n in public if not n.startswith("_") and hasattr(jaxloss, n))


def swap() -> dict[str, list[str]]:
    """Swap jaxloss's functions into optax; returns {private module: names swapped there}.

    Each private module of ``optax.losses`` that defines a swapped name is replaced, as the
    package's attribute and in ``sys.modules``, by a copy of it with jaxloss's functions: the
    tests see jaxloss, optax's own functions keep their module (and its originals).
    """
    import types

    import optax
    import optax.losses

    import jaxloss

    names = swappable()
    done: dict[str, list[str]] = {}
    for attr, module in list(vars(optax.losses).items()):
        if not (isinstance(module, types.ModuleType) and attr.startswith("_")):
            continue
        if not module.__name__.startswith("optax.losses.") or hasattr(module, "__optax_module__"):
            continue  # not a private module of optax.losses, or already swapped
        here = [n for n in names if getattr(module, n, None) is getattr(optax.losses, n)]
        if not here:
            continue
        copy = types.ModuleType(module.__name__, module.__doc__)
        copy.__dict__.update(vars(module))
        copy.__dict__["__optax_module__"] = module
        for n in here:
            setattr(copy, n, getattr(jaxloss, n))
        setattr(optax.losses, attr, copy)
        sys.modules[module.__name__] = copy
        done[module.__name__] = here
    for n in names:
        original = getattr(optax.losses, n)
        setattr(optax.losses, n, getattr(jaxloss, n))
        if getattr(optax, n, None) is original:
            setattr(optax, n, getattr(jaxloss, n))
    return done


# --------------------------------------------------------------------------------------------
# The pytest plugin (loaded in the subprocess with -p bench.optax_suite).

_records: dict[str, Record] = {}
_names: list[str] = []  # what jaxloss offered when the run began


def pytest_configure(config: Any) -> None:
    _names[:] = swappable()
    if os.environ.get(ENV_SWAP) == "1":
        swap()


def _source(obj: Any) -> str:
    import inspect

    try:
        return inspect.getsource(inspect.unwrap(obj))
    except (OSError, TypeError):
        return ""


def _involved(item: Any, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the optax.losses names that a test involves, those of them in `names`)."""
    import inspect

    import optax.losses

    public = {n for n in dir(optax.losses) if not n.startswith("_")}
    function = getattr(item, "function", None) or getattr(item, "obj", None)
    module = getattr(item, "module", None)
    scope = vars(module) if module is not None else {}
    texts = [_source(function)]
    for klass in getattr(getattr(item, "cls", None), "__mro__", ())[:-1]:
        if klass.__module__ == scope.get("__name__"):
            texts.append(_source(vars(klass).get("setUp")))
    values: list[Any] = []
    seen: set[str] = set()
    for text in texts:  # grows: the test module's own helpers that the test calls, transitively
        for word in set(re.findall(r"\w+", text)) - seen:
            seen.add(word)
            value = scope.get(word)
            values.append(value)
            if inspect.isfunction(value) and value.__module__ == scope.get("__name__"):
                texts.append(_source(value))
    named = {n for n in public if re.search(rf"(?<!\w){n}\b", "\n".join(texts))}
    # absl's parameterized tests keep their parameters in the closure of the generated method.
    for cell in getattr(function, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        values += value.values() if isinstance(value, dict) else [value]
    for value in values:  # a loss passed as a parameter or bound to a module-level name
        name, home = getattr(value, "__name__", None), getattr(value, "__module__", None) or ""
        if callable(value) and name in public and home.startswith(("optax", "jaxloss")):
            named.add(name)
    return sorted(named), sorted(n for n in named if n in names)


def pytest_collection_finish(session: Any) -> None:
    for item in session.items:
        optax_names, ours = _involved(item, _names)
        item.user_properties.append(("optax_suite", {"optax": optax_names, "jaxloss": ours}))


def _message(report: Any) -> tuple[str, str]:
    """(first informative line of the failure, file:line where it was raised)."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        text, where = crash.message, f"{_short(crash.path)}:{crash.lineno}"
    elif isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        text = str(longrepr[2]).removeprefix("Skipped: ")
        where = f"{_short(longrepr[0])}:{longrepr[1]}"
    else:
        text, where = str(longrepr), ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "", where
    first = lines[0]
    if re.fullmatch(r"[\w.]*Error:?", first) and len(lines) > 1:  # "AssertionError:" alone
        first = f"{first.rstrip(':')}: {lines[1]}"
    # np.testing's mismatches: how far off, on the same line.
    far = [line for line in lines if line.startswith(("Max absolute", "Max relative", "(shapes"))]
    if far:
        first = "; ".join([first, *far])
    return first, where


def _short(path: Any) -> str:
    text = str(path)
    stdlib = "python{}.{}/".format(*sys.version_info[:2])
    for marker in ("site-packages/", str(REPO) + "/", stdlib):
        if marker in text:
            return text.split(marker, 1)[1]
    return text


def pytest_runtest_logreport(report: Any) -> None:
    record = _records.setdefault(
        report.nodeid, {"test": report.nodeid, "outcome": "passed", "message": "", "where": ""}
    )
    for key, value in report.user_properties:
        if key == "optax_suite":
            record.update(value)
    subtest = hasattr(report, "context")  # pytest's SubtestReport
    if report.failed:
        outcome = "failed" if report.when == "call" or subtest else "error"
        if record["outcome"] not in ("failed", "error"):
            record["outcome"] = outcome
            record["message"], record["where"] = _message(report)
    elif report.skipped and not subtest and record["outcome"] == "passed":
        record["outcome"] = "skipped"
        record["message"], record["where"] = _message(report)


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        message, where = _message(report)
        _records[report.nodeid] = {
            "test": report.nodeid,
            "outcome": "error",
            "message": message,
            "where": where,
            "optax": [],
            "jaxloss": [],
        }


def pytest_sessionfinish(session: Any) -> None:
    out = os.environ.get(ENV_OUT)
    if out and not hasattr(session.config, "workerinput"):  # the controller under xdist
        Path(out).write_text(json.dumps({"names": _names, "tests": list(_records.values())}))


# --------------------------------------------------------------------------------------------
# The runner.


def run_pytest(
    files: Sequence[Path], *, swapped: bool, workers: int = 1, timeout: float | None = None
) -> Record:
    """Run pytest on `files` in one subprocess with this plugin.

    Returns {"names": the optax.losses names that jaxloss offered (swapped in unless `swapped`
    is false), "tests": one record per test, "exit_code": pytest's, "output": pytest's}.
    Each record: test (its node id), file (the test file's stem), outcome (passed, failed,
    error or skipped), message and where (for failures, errors and skips), optax (the
    ``optax.losses`` names it involves) and jaxloss (those of them that jaxloss offers: swapped
    in, unless `swapped` is false).
    """
    with tempfile.TemporaryDirectory(prefix="optax_suite_") as tmp:
        ini, out = Path(tmp, "pytest.ini"), Path(tmp, "records.json")
        ini.write_text("")
        env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        env[ENV_SWAP], env[ENV_OUT] = ("1" if swapped else "0"), str(out)
        command = [sys.executable, "-m", "pytest", *map(str, files), "-q", "-rN"]
        rootdir = os.path.commonpath([str(Path(f).resolve().parent) for f in files])
        command += ["-c", str(ini), "--rootdir", rootdir, "-p", "no:cacheprovider"]
        command += ["-p", "bench.optax_suite"]
        if workers > 1:
            command += ["-n", str(workers)]
        proc = subprocess.run(
            command, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout
        )
        result = json.loads(out.read_text()) if out.exists() else {"names": [], "tests": []}
    stems = {Path(f).stem: Path(f).stem.removeprefix("_").removesuffix("_test") for f in files}
    for record in result["tests"]:
        stem = Path(record["test"].split("::", 1)[0]).stem
        record["file"] = stems.get(stem, stem)
        record["cause"] = cause(record) if record["outcome"] in ("failed", "error") else ""
    return result | {"exit_code": proc.returncode, "output": proc.stdout + proc.stderr}


# Guessed causes of a failure, the first rule that matches wins: (cause, a pattern that the
# message must match, a pattern that the test's name must match); "" matches anything.
CAUSES: tuple[tuple[str, str, str], ...] = (
    ("keyword-only options", r"positional argument", ""),
    ("parameter name", r"unexpected keyword argument '(labels|targets|logits|predictions)'", ""),
    ("option not offered", r"unexpected keyword argument", ""),
    ("where semantics", r"\bwhere\b", ""),
    ("where semantics", r"", r"mask|where"),
    ("tuple axis", r"axis", r"axes|axis"),
    ("shape", r"Tuples differ|shapes", ""),
    ("error message", r"not found in|does not match", ""),
    ("deprecation warning", r"Warning not triggered", ""),
    ("dtype", r"dtype|float16|bfloat16", ""),
    ("dtype", r"", r"dtype|precision|half"),
)


def cause(record: Record) -> str:
    """A guessed cause for a failed test: "no jaxloss function" when it involves none,
    "rounding" for a mismatch under 1e-3 relative, else the first rule of CAUSES that matches,
    else "values differ" for other mismatches and "other" for the rest."""
    message, name = record.get("message", ""), record["test"].rsplit("::", 1)[-1]
    if not record.get("jaxloss"):
        return "no jaxloss function"
    relative = re.search(r"Max relative difference[^:]*: ([-+.\deE]+|inf|nan)", message)
    if relative and float(relative.group(1)) < 1e-3:
        return "rounding"
    for label, pattern, hint in CAUSES:
        if (not pattern or re.search(pattern, message, re.I)) and (
            not hint or re.search(hint, name, re.I)
        ):
            return label
    return "values differ" if message.startswith("AssertionError") else "other"


def summary(records: Sequence[Record]) -> list[Record]:
    """One row per file (and a total): tests, passed, failed, errors, skipped, no jaxloss."""
    rows: dict[str, Record] = {}
    for r in records:
        for key in (r["file"], "total"):
            row = rows.setdefault(key, dict.fromkeys(_COUNTS, 0) | {"file": key})
            row["tests"] += 1
            row[r["outcome"]] += 1
            row["no jaxloss"] += not r["jaxloss"]
    total = rows.pop("total", dict.fromkeys(_COUNTS, 0) | {"file": "total"})
    return [*sorted(rows.values(), key=lambda r: r["file"]), total]


_COUNTS = ("tests", "passed", "failed", "error", "skipped", "no jaxloss")


def table(rows: Sequence[Record]) -> str:
    headers = ("file", *_COUNTS)
    cells = [[str(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [values[0].ljust(widths[0])]
        padded += [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *map(line, cells)])


def failures(records: Sequence[Record]) -> str:
    """Every failure and error, grouped by guessed cause."""
    bad = [r for r in records if r["outcome"] in ("failed", "error")]
    out: list[str] = []
    for label in sorted({r["cause"] for r in bad}):
        group = [r for r in bad if r["cause"] == label]
        out.append(f"\n{label} ({len(group)}):")
        for r in group:
            test = r["test"].split("::", 1)[-1]
            ours = ",".join(r["jaxloss"]) or "-"
            out.append(f"  {r['file']}::{test} [{ours}] {r['outcome']}: {r['message'][:200]}")
            if r["where"]:
                out.append(f"      at {r['where']}")
    return "\n".join(out)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.optax_suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--files", nargs="+", choices=FILES, default=list(FILES), metavar="NAME",
        help=f"which optax test files (default: all of {', '.join(FILES)})",
    )  # fmt: skip
    parser.add_argument("--no-swap", action="store_true", help="optax alone: the baseline")
    parser.add_argument("--json", type=Path, help="write the records and the summary here")
    parser.add_argument(
        "-n", "--workers", type=int, default=1, help="pytest-xdist workers (default 1)"
    )
    parser.add_argument("--output", action="store_true", help="print pytest's own output")
    args = parser.parse_args(argv)

    swapped = not args.no_swap
    start, cpu = time.perf_counter(), _children_cpu()
    run = run_pytest(optax_test_files(args.files), swapped=swapped, workers=args.workers)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    records, names, code = run["tests"], run["names"], run["exit_code"]
    if args.output or code not in (0, 1) or not records:
        print(run["output"])
    rows = summary(records)
    print(f"optax's loss tests, {'jaxloss swapped in' if swapped else 'optax alone'}")
    print(f"{'swapped' if swapped else 'jaxloss offers'}: {', '.join(names) or '-'}\n")
    print(table(rows))
    print(f"\n{seconds:.0f} s wall, {cpu:.0f} s CPU, {args.workers} worker(s), exit code {code}")
    if any(r["outcome"] in ("failed", "error") for r in records):
        print(failures(records))
    if args.json:
        import optax

        import jaxloss

        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "swapped": swapped,
            "names": names,
            "optax": optax.__version__,
            "jaxloss": getattr(jaxloss, "__version__", None),
            "wall_s": seconds,
            "cpu_s": cpu,
            "workers": args.workers,
            "exit_code": code,
            "summary": rows,
            "tests": records,
        }
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if code in (0, 1) and records else 1


if __name__ == "__main__":
    sys.exit(main())
