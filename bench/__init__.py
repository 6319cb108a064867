"""``python -m bench``: what each jaxloss loss does on real data, and what it costs.

Part 1 (``bench.quality``) trains one small MLP on scikit-learn's digits with six output-layer
and loss pairings and a multi-label task; part 2 (``bench.speed``) times cross-entropy against
optax, PyTorch and a copy of the logits, and the fused linear + cross-entropy against the
materialised logits. Each part returns plain records; ``bench.report`` renders them as Markdown
tables and plots and is the only module that writes files. ``bench.cli.main`` runs the parts.
"""
