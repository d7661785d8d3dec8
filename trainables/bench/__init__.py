"""Measurement harnesses for FreezeFrame's training loop; nothing in the product imports them.

- `loops`: the paper's loop and FreezeFrame's side by side, img/s and projected grid time
  (`python -m trainables.bench`).
- `reference_loop`: the paper's loop (Wang, Silvestre & Curran 2023, the study FreezeFrame
  generalises), re-implemented as the benchmark's reference.
- `share`: several trials sharing one CPU, each with its share of the cores or with all of them
  (`python -m trainables.bench.share`).
- `pretraining`: which offline pretraining source helps decoder-only fine-tuning most
  (`python -m trainables.bench.pretraining`).

The Ray and logging overhead per trial is measured on the search side: `search.bench.overhead`.
"""
