"""Command line of ``python -m bench``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from bench.config import PRESETS

DESCRIPTION = """\
What each jaxloss loss does on real data, and what it costs. Prints Markdown tables and writes
JSON results and PNG plots to --out. Run from the repository root.

quality: one small MLP (optax Adam, jit-compiled step, fixed seeds) trained on scikit-learn's
  digits (fixed stratified 75/25 split) with six pairings: softmax + CE, log-softmax + NLL
  (must equal the first), sigmoid + one-vs-all BCE, sigmoid + squared error, CE with label
  smoothing 0.1, softmax focal loss (gamma 2). Reports test accuracy, test NLL (sigmoid
  outputs renormalised to sum to one), top-label ECE (15 bins), epochs to 95%% test accuracy,
  the share of test digits with two or more sigmoid outputs above 0.5, and the output-layer
  gradient norm in the first epoch; then a multi-label task (even, > 4, prime, closed loop)
  with sigmoid BCE with and without pos_weight vs softmax over the 16 combinations
  (per-attribute F1, subset accuracy); then distillation: a 128-128 teacher trained on every
  training digit teaches the MLP, which sees a stratified subset of 200 of them (labels and
  the teacher's logits), five ways: labels only (CE), and 0.5 CE + 0.5 distillation_loss with
  forward KL at T 1, forward KL at T 4, reverse KL at T 4, JSD (beta 0.5) at T 4 (test
  accuracy, NLL, ECE, agreement with the teacher; mean and std over 3 seeds, 5 with --full);
  then two-tower retrieval: the top and bottom halves of each digit embedded by two MLPs
  trained with softmax_contrastive_loss or sigmoid_contrastive_loss (learned scale and bias),
  test recall@1 and @5 both ways among the 450 test digits, the learned temperature; then
  CTC: strips of 3-6 digits read column by column by an MLP trained with ctc_loss, sequence
  accuracy and character error rate of greedy decoding on strips of test digits; then sparse
  outputs and margins: the MLP trained with softmax CE, multiclass_sparsemax_loss,
  entmax15_loss and multiclass_hinge_loss (test accuracy, NLL of the test labels under each
  model's own output where finite and the share of labels given probability 0, NLL under
  softmax of the logits, non-zero outputs per digit; mean and std over 3 seeds, 5 with --full).
  Files: quality.json, quality.md, learning_curves.png, reliability.png, grad_norms.png.

speed: integer-label cross-entropy, jaxloss vs optax vs torch F.cross_entropy vs a copy of
  the logits, forward and forward + backward under jit, float32 and bfloat16; soft-target
  cross-entropy vs optax, both dtypes; fused linear + CE vs the materialised logits (time and
  compiled temporary memory); the contrastive losses in blocks vs the materialised [B, B]
  similarity matrix, D = 128, time and memory against B; CTC against optax and PyTorch at
  (B, T, K, N) = (16, 500, 64, 100) and (64, 150, 1000, 40). Medians of interleaved repetitions
  in a random order, with an untimed pause after each call so the release of its buffers is
  not charged to the next.
  Files: speed.json, speed.md, ce_time_vs_vocab.png, contrastive_vs_batch.png.

sizes: the quick default takes about four minutes on 2 CPU cores (speed: N x V up to
  2048 x 32768; fused N=2048, D=256, V=8192; contrastive B up to 4096, memory at 16384; CTC
  at both shapes; quality: 30 epochs, one seed; distillation: teacher 30 epochs, students
  100, 3 seeds; retrieval: 60 epochs, 3 seeds; CTC strips: 30 epochs, one seed; sparse
  outputs: 30 epochs, 3 seeds). --full trains 100 epochs over 3 seeds (distillation: students
  200 epochs, 5 seeds; retrieval 120 epochs, 5 seeds; strips 60 epochs, 3 seeds; sparse
  outputs 100 epochs, 5 seeds) and times (8192, 1000), (2048, 32768),
  (512, 131072), (4096, 32768), the fused N=8192, D=256, V=32768 and the contrastive B up
  to 8192 (memory to 32768): over 10 minutes and 5 GB of memory.

timings: XLA:CPU and PyTorch use every core they see; run on an otherwise idle machine.
  JSON records XLA_FLAGS and GLIBC_TUNABLES, which change timings: by default glibc maps
  each fresh buffer over 32 MiB anew, so a large output pays first-touch page faults.
"""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="longer training, the large grid")
    size.add_argument(
        "--tiny",
        action="store_true",
        help="a few-second smoke run (tests use it; numbers are meaningless)",
    )
    parser.add_argument("--only", choices=("quality", "speed"), help="run one part only")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench/results"),
        help="results folder (default: %(default)s)",
    )
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out of the timings")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Imported here so that --help stays fast.
    from bench import environment, quality, report, speed

    config = PRESETS["full" if args.full else "tiny" if args.tiny else "quick"]
    if args.no_torch:
        config = dataclasses.replace(config, speed=dataclasses.replace(config.speed, torch=False))
    env = environment.environment()
    env["preset"] = config.name
    env["command"] = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    print(report.title(config.name, env), flush=True)
    for part, suite in {"quality": quality, "speed": speed}.items():
        if args.only in (None, part):
            start = time.perf_counter()
            records = suite.run(getattr(config, part), progress=not args.no_progress)
            records["wall_time_s"] = time.perf_counter() - start
            print(report.write(part, records, env, args.out), flush=True)
    print(f"JSON, Markdown and PNG files are in {args.out}/")
    return 0
