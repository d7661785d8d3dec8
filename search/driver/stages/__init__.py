"""The study's stages, one module each: pretrain -> tune -> final.

Each stage is one or more Ray Tune experiments run through `common.StageRunner`; a stage takes
what earlier stages produced as arguments (the encoder weights, the best recipes) and returns
what it produced. `search.study` runs them in order.
"""
