"""Measurement harnesses for the search service; nothing in the product imports them.

- `overhead`: what Ray Tune and W&B logging cost per trial (`python -m search.bench.overhead`).

The training loop's own speed is measured in `trainables.bench`.
"""
