"""Made-up inputs for tests, benchmarks and the CPU smoke pipelines, never used by a model stage:
COCO fixtures in the official COCO-Stuff and instances formats (``fixtures``) and perturbed
copies of a ground truth with known kinds of error (``perturb``)."""
