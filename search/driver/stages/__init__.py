"""The study's stages, one module each: pretrain -> tune -> explore -> final.

Each stage is one or more Ray Tune experiments run through `common.StageRunner`; a stage takes
what earlier stages produced as arguments (the encoder weights, the best recipes) and returns
what it produced. `search.driver.study` runs them in order; `history` rebuilds a search stage's trials on resume.
"""
