"""visionkit's benchmarks: speed of the shipped recipes against a baseline measured in the same
run, and of what surrounds training (matrix-multiply peak, data pipeline, COCO evaluation).

They live beside the package, not in it (as timm's ``benchmark.py`` and torchvision's
``references/``): the wheel ships none of this. Run them from a checkout of the repository::

    python tools/benchmark.py --help
    python tools/benchmark.py --quick --check-floors benchmarks/floors.json   # the CI guard
    python tools/bench_ddp.py --help                                          # DDP on CPU

Each *case* pairs our model (built from a recipe by :func:`visionkit.create_model`, untrained)
with a baseline built from another library, fed the same synthetic images and targets at the
same size and precision (or, with ``--baseline-precision`` / ``--baseline-image-size``, the
baseline at its own). For both models the harness measures:

- training images/s: forward + loss + backward + optimiser step at the recipe's batch;
- inference ms/image at each of ``infer_batch_sizes``: eval mode, ``torch.inference_mode``,
  post-processing (decoding, NMS) included;
- FLOPs of a training step and of inference (``torch.utils.flop_counter``), and the achieved
  FLOP/s as a fraction of the matrix-multiply peak (at the model's precision) measured at the
  start of the run;
- peak resident memory (process-wide, see :class:`~benchmarks.harness.PeakRSS`) while training
  and while inferring.

Every figure is the median of ``reps`` timed repetitions after ``warmup`` untimed ones. The
timed repetitions of the two models alternate in rounds (ours, baseline; ours, baseline; ...),
and each ratio ours / baseline is the median over rounds of the ratio within a round, so load
from other processes on a shared machine falls on both alike. The ratios are the figures to
read, not the absolute speeds.

One module per concept:

- ``cli``: the options of ``tools/benchmark.py``, turned into :class:`~benchmarks.harness.Settings`,
  and the command itself (measure, write JSON and Markdown, check the floors);
- ``recipes``: shipped recipe names, and the case class of each recipe's head;
- ``suite``: a whole run (every case, then the pipeline and COCO evaluation) and its results;
- ``harness``: run settings, timing in alternating rounds, medians, peak memory, machine facts;
- ``cases``: :class:`~benchmarks.cases.BenchmarkCase` and ``RecipeCase``; one module per
  comparison: ``classification`` (against timm's classifier), ``detection`` (FCOS / RetinaNet
  against torchvision's with a ResNet-18 FPN), ``segmentation`` (against
  ``deeplabv3_mobilenet_v3_large``), ``multitask`` (against the single-task models in
  sequence);
- ``runner``: measuring one case (training, inference, FLOPs, memory);
- ``flops``: FLOP counts (``torch.utils.flop_counter``) and achieved FLOP/s;
- ``peak``: the matrix-multiply peak at fp32 and bf16;
- ``pipeline``: the recipe's training data loader alone;
- ``coco_eval``: pycocotools ``COCOeval`` on a large synthetic results file;
- ``floors``: the CI regression guard; ``report``: JSON and Markdown tables;
- ``ddp``: one process against DDP on the same CPU cores (``tools/bench_ddp.py``).

A new comparison is one more :class:`~benchmarks.cases.BenchmarkCase` subclass and one entry
in :data:`benchmarks.recipes.CASES`.
"""
