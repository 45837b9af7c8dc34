"""Real DDP on CPU: ``visionkit train`` with 2 processes (gloo) for a few steps of a detection +
semantic segmentation model, then ``visionkit eval`` of its checkpoint with 1 and with 2
processes on an odd number of validation images: the metrics are equal. Every file of the run
folder and the saved predictions are written by rank 0 only (an audit hook in every process
records what each rank opens for writing), results are printed once, and a rank whose
training batch holds no box neither hangs nor trips DDP's unused-parameter check."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch.utils.data import DistributedSampler

from visionkit.config import load_config
from visionkit.data.datasets import seed_pipeline
from visionkit.data.synthetic import make_shapes
from visionkit.data.transforms import build_pipeline
from visionkit.engine.datamodule import SkipCountingLoader, SkippedImages, unpadded_sampler
from visionkit.engine.run_folder import metrics_json
from visionkit.engine.runner import evaluate, make_trainer
from visionkit.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
NUM_TRAIN, NUM_VAL, BATCH, EPOCHS, SEED = 16, 9, 2, 2, 0  # NUM_VAL odd: ranks get 5 and 4

# Loaded by every Python process started with its folder on PYTHONPATH (Lightning's DDP
# children inherit the environment): appends "rank<TAB>path" for each file under AUDIT_ROOT
# that the process opens for writing or renames into place.
SITECUSTOMIZE = """
import os, sys

def _audit(event, args):
    root = os.environ.get("AUDIT_ROOT")
    if not root or event not in ("open", "os.rename", "os.replace"):
        return
    if event == "open":
        path, mode, flags = args
        writing = any(c in (mode or "") for c in "wax+") or (
            mode is None and isinstance(flags, int)
            and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
    else:
        path, writing = args[1], True
    if not writing or not isinstance(path, (str, bytes, os.PathLike)):
        return
    path = os.fsdecode(path)
    if os.path.abspath(path).startswith(root) and not path.endswith(".audit"):
        rank = os.environ.get("LOCAL_RANK", "0")
        with open(os.path.join(root, f"{os.getpid()}.audit"), "a") as f:
            f.write(f"{rank}\\t{os.path.abspath(path)}\\n")

sys.addaudithook(_audit)
"""


def run_cli(args, audit_root, hook_dir, timeout=240, stderr=False, returncode=0):
    """``python -m visionkit.cli ARGS`` from the repo root; a hang fails by the timeout.
    Returns stdout (and stderr, with ``stderr=True``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hook_dir), str(REPO), env.get("PYTHONPATH", "")])
    env["AUDIT_ROOT"] = str(audit_root)
    for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK", "RANK"):
        env.pop(name, None)  # a fresh launch, whatever this process ran before
    proc = subprocess.run(
        [sys.executable, "-m", "visionkit.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == returncode, proc.stderr[-4000:]
    return (proc.stdout, proc.stderr) if stderr else proc.stdout


def writers(audit_root):
    """``{path relative to audit_root: {ranks that wrote it}}`` from the audit files."""
    out: dict[str, set[str]] = {}
    for log in Path(audit_root).glob("*.audit"):
        for line in log.read_text().splitlines():
            rank, path = line.split("\t")
            rel = Path(path).relative_to(audit_root)
            if not rel.name.startswith("."):  # temp files of atomic writes: their target counts
                out.setdefault(str(rel), set()).add(rank)
    return out


def rank_batches_without_boxes(annotations):
    """(epoch, rank, batch) of the training batches that hold no box, as Lightning's
    DistributedSampler (shuffled, seeded with the run's seed) deals them out."""
    data = json.loads(Path(annotations).read_text())
    with_boxes = {a["image_id"] for a in data["annotations"]}
    empty = [image["id"] not in with_boxes for image in data["images"]]
    found = []
    for epoch in range(EPOCHS):
        for rank in (0, 1):
            sampler = DistributedSampler(range(NUM_TRAIN), 2, rank, shuffle=True, seed=SEED)
            sampler.set_epoch(epoch)
            indices = list(sampler)
            for b in range(0, len(indices), BATCH):
                if all(empty[i] for i in indices[b : b + BATCH]):
                    found.append((epoch, rank, b // BATCH))
    return found


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Train for EPOCHS × 4 steps with 2 processes; returns paths and the train stdout."""
    root = tmp_path_factory.mktemp("ddp")
    make_shapes(root / "train", num_images=NUM_TRAIN, size=64, seed=0, min_shapes=0, max_shapes=2)
    make_shapes(root / "val", num_images=NUM_VAL, size=64, seed=1, min_shapes=0, max_shapes=2)
    hook_dir = root / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    config = {
        "name": "ddp",
        "seed": SEED,
        "output_dir": str(root / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 32, "min_level": 3, "max_level": 5},
            "heads": {
                "det": {"name": "fcos", "num_convs": 1},
                "seg": {"name": "semantic_fpn", "channels": 32},
            },
        },
        "data": {
            "train": {"format": "coco", "images": str(root / "train")},
            "val": {"format": "coco", "images": str(root / "val")},
            "image_size": 64,
            "batch_size": BATCH,
            "val_batch_size": 1,  # per image: the same numbers whatever shares a batch
            "num_workers": 0,
        },
        "optimizer": {"name": "adamw", "lr": 0.003},
        "trainer": {
            "max_epochs": EPOCHS,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = root / "runs" / "ddp"
    stdout = run_cli(
        [
            "train",
            "--config",
            str(config_path),
            "trainer.devices=2",
            "trainer.strategy=ddp",
        ],
        audit_root=run_dir,
        hook_dir=hook_dir,
    )
    return {"root": root, "run_dir": run_dir, "hook_dir": hook_dir, "stdout": stdout}


def test_ddp_training_writes_the_run_folder_from_rank_zero_only(ddp_run):
    run_dir = ddp_run["run_dir"]
    # the precondition of "a rank's batch has no boxes": it happened in this run
    assert rank_batches_without_boxes(ddp_run["root"] / "train" / "annotations.json")
    assert ddp_run["stdout"].count("run folder:") == 1
    written = writers(run_dir)
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.csv", "metrics.json"):
        assert name in written, sorted(written)
    assert all(ranks == {"0"} for ranks in written.values()), written
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + EPOCHS
    steps = [row.split(",")[1] for row in rows[1:]]
    # 16 images / 2 ranks / batch 2 = 4 steps per epoch: the ranks shared the epoch
    assert steps == [str(4 * (e + 1)) for e in range(EPOCHS)], steps
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"det/mAP", "seg/mIoU", "val/loss"} <= set(metrics)


def test_eval_with_two_processes_equals_one_process(ddp_run, tmp_path):
    checkpoint = ddp_run["run_dir"] / "checkpoints" / "best.ckpt"
    overrides = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto"]
    one = evaluate(checkpoint, overrides, save_predictions=tmp_path / "preds1.json")
    one = json.loads(metrics_json(one))  # nan -> None, as the command prints it
    preds1 = json.loads((tmp_path / "preds1.json").read_text())

    audit = tmp_path / "audit"
    audit.mkdir()
    preds = audit / "preds.json"
    args = ["eval", "--checkpoint", str(checkpoint), "--save-predictions", str(preds)]
    args += ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
    stdout = run_cli(args, audit_root=audit, hook_dir=ddp_run["hook_dir"])
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, stdout  # printed by rank 0 only
    assert writers(audit) == {"preds.json": {"0"}}  # the gathered results, written once
    two, preds2 = json.loads(lines[0]), json.loads(preds.read_text())

    assert {"det/mAP", "det/mAP50", "seg/mIoU", "seg/pixel_acc", "val/loss"} <= set(one)
    assert one.keys() == two.keys()
    for key, value in one.items():
        if value is None:  # nan: COCO's "no such objects"
            assert two[key] is None, key
        elif key == "val/loss":  # a mean of per-image losses, summed in another order
            assert math.isclose(two[key], value, rel_tol=1e-6), (key, value, two[key])
        else:
            assert abs(two[key] - value) <= 1e-6, (key, value, two[key])
    assert one["seg/pixel_acc"] > 0 and one["seg/mIoU"] > 0

    # the gathered predictions are those of one process: every image, each once
    def key(r):
        return (r["image_id"], r["category_id"], -r["score"])

    preds1, preds2 = sorted(preds1, key=key), sorted(preds2, key=key)
    assert {r["image_id"] for r in preds1} == set(range(1, NUM_VAL + 1))
    assert len(preds1) == len(preds2)
    for a, b in zip(preds1, preds2, strict=True):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        torch.testing.assert_close(
            torch.tensor([*a["bbox"], a["score"]]), torch.tensor([*b["bbox"], b["score"]])
        )


def test_validation_shares_cover_every_image_once():
    shares = [list(unpadded_sampler(range(NUM_VAL), rank, 2)) for rank in (0, 1)]
    assert shares == [[0, 2, 4, 6, 8], [1, 3, 5, 7]]  # no padding: rank 1 runs one image less
    with pytest.raises(DataError, match="fewer than the 3 processes"):
        unpadded_sampler(range(2), 0, 3)


def flips(pipeline, n=48):
    """Which of n runs flipped an asymmetric image horizontally / vertically."""
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    out = []
    for _ in range(n):
        result = pipeline(image=image, bboxes=np.zeros((0, 4)), labels=[], instance_ids=[])
        flipped = result["image"][0].numpy()
        plain = (image[..., 0] / 255.0).astype(np.float32)
        out.append(
            (
                bool(np.allclose(flipped, plain[:, ::-1]))
                or bool(np.allclose(flipped, plain[::-1, ::-1])),
                bool(np.allclose(flipped, plain[::-1]))
                or bool(np.allclose(flipped, plain[::-1, ::-1])),
            )
        )
    return out


def test_augmentations_are_seeded_per_rank_and_independent_per_transform():
    steps = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "VerticalFlip", "p": 0.5}]

    def pipeline(*keys):
        built = build_pipeline(steps, mean=(0, 0, 0), std=(1, 1, 1))
        seed_pipeline(built, *keys)
        return built

    rank0 = flips(pipeline(0, 0, 0))
    assert rank0 == flips(pipeline(0, 0, 0))  # reproducible
    assert rank0 != flips(pipeline(0, 1, 0))  # another rank draws other flips
    assert any(h != v for h, v in rank0)  # the two flips are not one coin


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_notebook"])
def test_strategies_whose_results_stay_in_their_workers_are_refused(tiny_config, strategy):
    """ddp_spawn's workers keep their metrics, evaluators and timings: ``metrics.json`` had
    float32 copies without the nan keys or times, and ``eval --save-predictions`` wrote [].
    (``make_trainer`` is the trainer of ``train`` and ``evaluate``.)"""
    tiny_config["trainer"].update(devices=2, strategy=strategy)
    with pytest.raises(ConfigError, match=r"trainer\.strategy: .* use trainer\.strategy=ddp"):
        make_trainer(load_config(tiny_config), Path("unused"), logger=False)
    with pytest.raises(ConfigError, match=r"in a notebook: trainer\.devices=1\)"):
        make_trainer(load_config(tiny_config), Path("unused"), logger=False)


def test_eval_on_one_device_leaves_the_checkpoints_strategy_out(tiny_config, tmp_path):
    """``--device cpu`` is the way the messages give to evaluate a checkpoint of another
    machine, but it set only the accelerator and devices: a checkpoint trained with
    ddp_spawn (or sync_batchnorm on GPUs) was refused on the laptop for its stored strategy."""
    import visionkit
    from visionkit.engine.runner import evaluate, train

    tiny_config["trainer"].update(max_epochs=None, max_steps=1)
    run_dir, _ = train(tiny_config)
    model = visionkit.load(run_dir / "checkpoints" / "best.ckpt")
    stored = model.meta["config"]["trainer"]
    stored.update(accelerator="gpu", devices=4, strategy="ddp_spawn", sync_batchnorm=True)
    assert "cls/top1" in evaluate(model, device="cpu")


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"strategy": "nonsense"}, "trainer: Lightning cannot set up .*strategy='nonsense'"),
        ({"limit_train_batches": -1}, "trainer: Lightning refuses the settings: .*-1"),
    ],
)
def test_what_lightning_refuses_is_a_config_error_about_the_setting(tiny_config, setting, expected):
    """An unknown strategy was Lightning's ValueError traceback, and every refusal of
    Lightning's was called a hardware problem, with advice about devices."""
    tiny_config["trainer"].update(setting)
    with pytest.raises(ConfigError, match=expected) as info:
        make_trainer(load_config(tiny_config), Path("unused"), logger=False)
    assert ("devices=1" in str(info.value)) == ("strategy" in setting)


def test_gpus_this_machine_lacks_are_a_config_error_naming_the_trainer_keys(tiny_config):
    """A checkpoint trained on 4 GPUs keeps them in its config: eval on a laptop was
    Lightning's MisconfigurationException traceback ("No supported gpu backend found!")."""
    tiny_config["trainer"].update(accelerator="gpu", devices=64, strategy="ddp")
    with pytest.raises(ConfigError) as info:
        make_trainer(load_config(tiny_config), Path("unused"), logger=False)
    assert "trainer: Lightning cannot set up trainer.accelerator=gpu, trainer.devices=64" in str(
        info.value
    )
    assert "trainer.accelerator=cpu trainer.devices=1 trainer.strategy=auto (visionkit eval: " in (
        str(info.value)
    )


def test_sync_batchnorm_on_cpu_processes_is_a_config_error(tiny_config):
    """torch's SyncBatchNorm is GPU-only: DDP stopped with a traceback in each rank."""
    tiny_config["trainer"].update(devices=2, strategy="ddp", sync_batchnorm=True)
    with pytest.raises(ConfigError, match=r"sync_batchnorm: true with 2 CPU process\(es\) of DDP"):
        make_trainer(load_config(tiny_config), Path("unused"), logger=False)
    tiny_config["trainer"].update(devices=1)  # DDP converts the layers in one process too
    with pytest.raises(ConfigError, match=r"sync_batchnorm: true with 1 CPU process\(es\)"):
        make_trainer(load_config(tiny_config), Path("unused"), logger=False)
    tiny_config["trainer"].update(devices=1, strategy="auto")  # one process: nothing to sync
    assert make_trainer(load_config(tiny_config), Path("unused"), logger=False).world_size == 1


def _skipping_worker(rank, world_size, init_file, out_dir):
    """Rank r's loader skips ``bad<r>.png`` (its second image) and rank 1 also ``bad9.png``;
    the epoch's report is logged into ``out_dir/log<rank>.txt``."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("visionkit").addHandler(handler)
    try:

        def collate(items):
            bad = [f"bad{rank}.png"] * (items[0] == 1) + ["bad9.png"] * (items[0] == 2 == rank + 1)
            return {"skipped": [{"path": p} for p in bad], "images": items}

        loader = SkipCountingLoader(range(3), batch_size=1, collate_fn=collate)
        assert all("skipped" not in batch for batch in loader)  # taken out of the batches
        SkippedImages.report(SimpleNamespace(is_global_zero=rank == 0), loader)
        Path(out_dir, f"log{rank}.txt").write_text("\n".join(lines))
    finally:
        dist.destroy_process_group()


def test_images_skipped_on_every_rank_are_reported_once_with_the_total(tmp_path):
    """Each rank logged its own share's count: two lines, neither the epoch's total."""
    args = (2, str(tmp_path / "init"), str(tmp_path))
    mp.start_processes(_skipping_worker, args=args, nprocs=2, join=True, start_method="fork")
    assert (tmp_path / "log0.txt").read_text() == (
        "on_bad_image: skip: 3 unreadable images were skipped this epoch "
        "(3 files: bad0.png, bad1.png, bad9.png)"
    )
    assert (tmp_path / "log1.txt").read_text() == ""


def test_the_skip_report_gathers_before_hooks_that_only_rank_zero_runs(tiny_config):
    """Rank 0's per-epoch log line (a rank-0-only hook) reads Lightning's synced metrics, a
    collective; a gather placed after it met that collective on rank 1 and both ranks hung."""
    trainer = make_trainer(load_config(tiny_config), Path("unused"), logger=False)
    assert isinstance(trainer.callbacks[0], SkippedImages)


@pytest.mark.slow
def test_a_joint_model_with_partial_labels_trains_and_evaluates_on_two_processes(tmp_path):
    """Five heads from two sets (boxes, keypoints, classes on shapes; identities on the other):
    most batches of a rank lack some head's labels, yet DDP (find_unused_parameters off)
    neither fails nor hangs; messages are printed once; the keypoint and embedding metrics of
    two processes equal those of one. Lightning warned that ``val/loss`` (over several
    validation sets) was logged without ``sync_dist``, as if it were not synchronised."""
    from visionkit.data.synthetic_identities import make_identities

    make_shapes(tmp_path / "kp", num_images=6, size=64, seed=0, max_shapes=2, keypoints=True)
    make_shapes(tmp_path / "kp_val", num_images=5, size=64, seed=1, max_shapes=2, keypoints=True)
    make_identities(tmp_path / "ids", num_images=8, size=32, identities=2)
    make_identities(tmp_path / "ids_val", num_images=7, size=32, identities=3, first_identity=2)
    shapes = {"format": "coco", "class_field": "background"}
    config = {
        "name": "joint",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {
                "cls": {"name": "linear"},
                "det": {"name": "fcos", "num_convs": 1},
                "pose": {"name": "fcos_keypoints", "num_convs": 1},
                "emb": {"name": "embedding", "embedding_dim": 8},
            },
        },
        "data": {
            "train": {
                "shapes": {**shapes, "images": str(tmp_path / "kp")},
                "ids": {"format": "identities", "root": str(tmp_path / "ids")},
            },
            "val": {
                "shapes": {**shapes, "images": str(tmp_path / "kp_val")},
                "ids": {"format": "identities", "root": str(tmp_path / "ids_val")},
            },
            "image_size": 64,
            "batch_size": 2,
            "val_batch_size": 1,
            "num_workers": 0,
            "transforms": {"train": [{"name": "Resize"}], "val": [{"name": "Resize"}]},
        },
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "precision": "32",
            "enable_progress_bar": False,
        },
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    hook_dir = tmp_path / "no_hook"
    hook_dir.mkdir()
    ddp = ["trainer.devices=2", "trainer.strategy=ddp"]
    _, err = run_cli(["train", "--config", str(config_path), *ddp], tmp_path, hook_dir, stderr=True)
    assert "sync_dist" not in err, err[-3000:]
    assert err.count("a small validation set (7 images)") == 1, err[-3000:]
    checkpoint = tmp_path / "runs" / "joint" / "checkpoints" / "best.ckpt"
    one = json.loads(
        metrics_json(evaluate(checkpoint, ["trainer.devices=1", "trainer.strategy=auto"]))
    )
    out = run_cli(["eval", "--json", "--checkpoint", str(checkpoint), *ddp], tmp_path, hook_dir)
    two = json.loads(out.splitlines()[-1])["metrics"]
    assert {"pose/kpt_mAP", "emb/auc", "emb/recall@1", "cls/top1", "det/mAP"} <= set(one)
    assert one.keys() == two.keys()
    for key, value in one.items():
        assert value == pytest.approx(two[key], rel=1e-6, abs=1e-9, nan_ok=True), key


@pytest.mark.slow
def test_parameters_no_head_uses_are_named_before_ddp_fails_on_them(tmp_path):
    """A classifier with a neck it never reads trains in one process; under DDP the second
    step was a RuntimeError traceback in every rank ("parameters that were not used in
    producing loss ... find_unused_parameters")."""
    make_shapes(tmp_path / "data", num_images=8, size=32, seed=0)
    make_shapes(tmp_path / "val", num_images=2, size=32, seed=1)
    data = {"format": "coco", "images": str(tmp_path / "data"), "class_field": "background"}
    config = {
        "name": "cls",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 8, "min_level": 3, "max_level": 5},
            "heads": {"cls": {"name": "linear"}},
        },
        "data": {
            "train": data,
            "val": {**data, "images": str(tmp_path / "val")},
            "image_size": 32,
            "batch_size": 2,
        },
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    hook_dir = tmp_path / "no_hook"
    hook_dir.mkdir()
    args = ["train", "--config", str(config_path), "trainer.devices=2", "trainer.strategy=ddp"]
    _, err = run_cli(args, tmp_path, hook_dir, stderr=True, returncode=2)
    assert (
        "parameters of the model get no gradient from the loss, in neck.fpn.inner_blocks, "
        "neck.fpn.layer_blocks: no head uses them" in err
    ), err[-3000:]
    assert "Traceback" not in err
    assert err.count("error: invalid configuration") == 1  # the same on both ranks: once


@pytest.mark.slow
def test_a_callback_that_syncs_at_the_epoch_end_neither_hangs_nor_mixes_ranks(tmp_path):
    """The run folder's epoch-end hook ran on rank 0 only and computed Lightning's synced
    metrics there (an all_reduce): a later callback's all_reduce on rank 1 met it instead of
    rank 0's, and the ranks hung or mixed their numbers."""
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT",
           "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK", "RANK")}  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    script = REPO / "tests" / "engine" / "collective_callback_run.py"
    try:
        proc = subprocess.run(
            [sys.executable, str(script), str(tmp_path)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=150,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the two processes hung at an epoch's end")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((tmp_path / "sums.json").read_text()) == [3.0, 3.0]
