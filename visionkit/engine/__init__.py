"""Training and evaluation through Lightning (:mod:`visionkit.engine.runner`).

Importing the package quiets what Lightning prints on every run that no user can act on."""

import logging
import warnings

# Lightning flattens every batch with torch's ``LeafSpec``, which torch 2.10 deprecates: one
# FutureWarning per run that no user can act on (it goes when Lightning moves off LeafSpec).
warnings.filterwarnings(
    "ignore",
    message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    category=FutureWarning,
)
# ... and ModelCheckpoint warns of a folder holding checkpoints on every resume: a new run
# always gets a folder of its own (engine/run_folder.py), so only a resume (or --exist-ok,
# asked for) finds one.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# ... and a run resumed from an epoch's end finishes that epoch first: ModelCheckpoint looks for
# its monitor among metrics that hold no validation yet, finds none and saves no best.ckpt
# candidate (right), but says "could not find the monitored key" as if the run were broken.
warnings.filterwarnings(
    "ignore",
    message=r".*could not find the monitored key in the returned metrics: \['epoch', 'step'\]",
)
# ... and a Trainer without Lightning's cloud logger and model registry advertises both
# ("💡 Tip: ... litlogger", "💡 Tip: ... litmodels") on every run and evaluation.
for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(
        lambda record: not any(word in record.getMessage() for word in ("litlogger", "litmodels"))
    )
