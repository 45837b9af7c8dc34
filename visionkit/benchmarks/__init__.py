"""The pieces of ``visionkit benchmark`` (the command itself: :mod:`visionkit.benchmark`).

- ``harness``: run settings, timing in alternating rounds, medians, peak memory, machine facts;
- ``cases``: :class:`~visionkit.benchmarks.cases.BenchmarkCase` and ``RecipeCase``; one module
  per comparison: ``classification``, ``detection``, ``segmentation``, ``multitask``;
- ``runner``: measuring one case (training, inference, FLOPs, memory);
- ``flops``: FLOP counts (``torch.utils.flop_counter``) and achieved FLOP/s;
- ``peak``: the matrix-multiply peak at fp32 and bf16;
- ``pipeline``: the recipe's training data loader alone;
- ``coco_eval``: pycocotools ``COCOeval`` on a large synthetic results file;
- ``floors``: the CI regression guard; ``report``: JSON and Markdown tables.
"""
