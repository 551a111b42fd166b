"""Developer tools (not part of the installed package): ``python -m tools.stage_deps`` prints each
stage's code dependencies (``--write`` rewrites them in the pipeline files); ``python -m
tools.independent`` recomputes a head's instance and semantic scores without zeroseg's code."""
