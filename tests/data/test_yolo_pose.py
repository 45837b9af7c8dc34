"""Ultralytics pose datasets (``kpt_shape`` in data.yaml) read by ``format: yolo`` and
``visionkit convert --from yolo``: keypoints in pixels, flip pairs, and bad lines reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from visionkit.build.data import build_dataset
from visionkit.build.model import heads_without_labels
from visionkit.cli import main
from visionkit.errors import DataError

# a 100 x 40 image; one object: box centre (50, 20), 60 x 32; keypoints (50, 20) visible,
# (25, 20) hidden, the third not labelled
LINE = "0 0.5 0.5 0.6 0.8 0.5 0.5 2 0.25 0.5 1 0 0 0\n"


def make_pose(root: Path, lines: str = LINE, **extra) -> Path:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (100, 40), (90, 90, 90)).save(root / "images" / split / "a.png")
        (root / "labels" / split / "a.txt").write_text(lines)
    data = {"path": ".", "train": "images/train", "val": "images/val", "names": {0: "person"}}
    data.update({"kpt_shape": [3, 3], "flip_idx": [0, 2, 1], **extra})
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


def read(data_yaml: Path, split: str = "train"):
    return build_dataset(
        {"format": "yolo", "root": str(data_yaml), "split": split, "keypoints": True}
    )


def test_keypoints_are_read_in_pixels_with_their_visibility_and_flip_pairs(tmp_path):
    dataset = read(make_pose(tmp_path))
    sample = dataset[0]
    np.testing.assert_allclose(sample["boxes"], [[20, 4, 80, 36]])
    np.testing.assert_allclose(sample["keypoints"], [[[50, 20, 2], [25, 20, 1], [0, 0, 0]]])
    assert sample["keypoint_flip"] == [0, 2, 1]  # flip_idx
    assert dataset.keypoint_schema.names == ["point0", "pair1_left", "pair1_right"]
    assert heads_without_labels({"pose": {"name": "fcos_keypoints"}}, dataset) == []


def test_a_folder_with_a_pose_data_yaml_reads_keypoints_too(tmp_path):
    make_pose(tmp_path)
    dataset = build_dataset(
        {"format": "yolo", "root": str(tmp_path), "split": "val", "keypoints": True}
    )
    assert dataset[0]["keypoints"].shape == (1, 3, 3)


def test_kpt_names_name_the_keypoints_and_carry_the_flip_pairs(tmp_path, capsys):
    names = {0: ["nose", "left_eye", "right_eye"]}
    dataset = read(make_pose(tmp_path / "a", kpt_names=names))
    assert dataset.keypoint_schema.names == ["nose", "left_eye", "right_eye"]
    assert dataset[0]["keypoint_flip"] == [0, 2, 1]
    # names that pair otherwise than flip_idx (Ultralytics' tiger-pose: flip_idx keeps every
    # point, the names have sides) were refused: followed, with a warning
    other = make_pose(tmp_path / "b", kpt_names=names, flip_idx=[0, 1, 2])
    assert read(other)[0]["keypoint_flip"] == [0, 2, 1]
    argv = ["check-data", "--format", "yolo", "--root", str(other), "--split", "train"]
    assert main([*argv, "keypoints=true"]) == 0
    out = capsys.readouterr().out
    assert "keypoint flip pairs" in out
    assert "flip_idx pairs keypoint 1 (left_eye) with 1 (left_eye), its name with 2 " in out
    assert "visionkit flips keypoints by their left / right names, so it follows kpt_names" in out


def test_two_numbers_a_keypoint_are_all_labelled_as_ultralytics_reads_them(tmp_path):
    lines = "0 0.5 0.5 0.6 0.8 0.5 0.5 0.25 0.5 0 0\n"
    sample = read(make_pose(tmp_path, lines, kpt_shape=[3, 2]))[0]
    np.testing.assert_allclose(sample["keypoints"], [[[50, 20, 2], [25, 20, 2], [0, 0, 2]]])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"kpt_shape": [3, 4]}, r"kpt_shape \[3, 4\]: expected \[K, 2\] or \[K, 3\]"),
        ({"flip_idx": [0, 1]}, r"flip_idx \[0, 1\]: expected 3 keypoint indices in 0..2"),
        ({"flip_idx": [1, 2, 0]}, r"keypoint 0 becomes 1, which becomes 2; a flip swaps pairs"),
        ({"kpt_names": {0: ["a", "b"]}}, r"kpt_names \['a', 'b'\]: expected a list of 3 names"),
        ({"kpt_oks_sigmas": [0.1, 0.2]}, r"kpt_oks_sigmas \[0.1, 0.2\]: expected 3 positive"),
        ({"kpt_oks_sigmas": [0.1, 0, 0.2]}, r"kpt_oks_sigmas \[0.1, 0, 0.2\]: expected 3 positive"),
    ],
)
def test_a_malformed_keypoint_definition_says_what_is_expected(tmp_path, extra, message):
    with pytest.raises(DataError, match=message):
        read(make_pose(tmp_path, **extra))


def test_bad_pose_lines_are_each_reported_with_file_and_line(tmp_path, capsys):
    lines = (
        LINE
        + "0 0.5 0.5 0.6 0.8\n"  # a box without its keypoints
        + "0 0.5 0.5 0.6 0.8 0.5 0.5 3 0.25 0.5 1 0 0 0\n"  # visibility 3
        + "0 0.5 0.5 0.6 0.8 1.5 0.5 2 0.25 0.5 1 0 0 0\n"  # x outside the image
    )
    data_yaml = make_pose(tmp_path, lines)
    code = main(["check-data", "--format", "yolo", "--root", str(data_yaml), "--split", "train"])
    out = capsys.readouterr().out
    assert code == 1
    assert (
        "labels/train/a.txt line 2: 5 fields; a line of this pose dataset holds class cx cy w "
        "h, then x y v for each of the 3 keypoints (kpt_shape [3, 3]): 14 numbers"
    ) in out
    assert "line 3: keypoint 0 (point0): visibility 3; expected 0 (not labelled)" in out
    assert "line 4: keypoint 0 (point0) at (1.5, 0.5): coordinates outside [0, 1]" in out


def test_convert_writes_the_keypoints_that_format_coco_reads_back(tmp_path):
    data_yaml = make_pose(tmp_path / "ds", kpt_names=["nose", "left_eye", "right_eye"])
    out = tmp_path / "train.json"
    assert main(["convert", "--from", "yolo", str(data_yaml), str(out), "--split", "train"]) == 0
    coco = json.loads(out.read_text())
    assert coco["categories"][0]["keypoints"] == ["nose", "left_eye", "right_eye"]
    assert coco["annotations"][0]["num_keypoints"] == 2
    again = build_dataset(
        {"format": "coco", "images": str(tmp_path / "ds"), "annotations": str(out)}
        | {"keypoints": True}
    )
    np.testing.assert_allclose(again[0]["keypoints"], read(data_yaml)[0]["keypoints"])
    assert again[0]["keypoint_flip"] == [0, 2, 1]


def test_kpt_oks_sigmas_of_data_yaml_are_the_heads_evaluation_sigmas(tmp_path):
    """Ultralytics' validation reads OKS sigmas from data.yaml (``kpt_oks_sigmas``); visionkit
    left them out and scored with 0.0669 each: other kpt_mAP numbers than the user asked for.
    They become the keypoint head's ``kpt_oks_sigmas`` (unless the config sets its own), and
    ``convert`` keeps them for a COCO json to give them back."""
    from tests.data.test_keypoints_data import keypoint_config
    from visionkit.build import build_datasets, build_model
    from visionkit.config import load_config

    sigmas = [0.05, 0.1, 0.1]
    data_yaml = make_pose(tmp_path / "ds", kpt_oks_sigmas=sigmas)
    config = keypoint_config(train={"format": "yolo", "root": str(data_yaml), "split": "train"})
    cfg = load_config(config)
    model = build_model(cfg, build_datasets(cfg.data, needs=["boxes", "keypoints"]))
    assert model.heads["pose"].kpt_oks_sigmas == sigmas
    assert model.meta["config"]["model"]["heads"]["pose"]["kpt_oks_sigmas"] == sigmas
    config["model"]["heads"]["pose"]["kpt_oks_sigmas"] = [0.2, 0.2, 0.2]  # the config's win
    cfg = load_config(config)
    model = build_model(cfg, build_datasets(cfg.data, needs=["boxes", "keypoints"]))
    assert model.heads["pose"].kpt_oks_sigmas == [0.2, 0.2, 0.2]
    out = tmp_path / "train.json"
    assert main(["convert", "--from", "yolo", str(data_yaml), str(out), "--split", "train"]) == 0
    assert json.loads(out.read_text())["categories"][0]["kpt_oks_sigmas"] == sigmas
    again = build_dataset(
        {"format": "coco", "images": str(tmp_path / "ds"), "annotations": str(out)}
        | {"keypoints": True}
    )
    assert again.keypoint_schema.sigmas == sigmas


def test_split_keeps_the_keypoint_definition_in_autosplit_yaml(tmp_path, capsys):
    """visionkit split wrote autosplit.yaml with path, lists and names only: every pose line
    was then a bad box (kpt_shape [K, 3]) or, worse, read as a polygon ([K, 2])."""
    root = tmp_path / "pose"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(4):
        Image.new("RGB", (100, 40), (90, 90, 90)).save(root / "images" / f"{i}.png")
        (root / "labels" / f"{i}.txt").write_text(LINE)
    data = {"names": {0: "person"}, "kpt_shape": [3, 3], "flip_idx": [0, 2, 1]}
    data["kpt_oks_sigmas"] = [0.05, 0.1, 0.1]
    (root / "data.yaml").write_text(yaml.safe_dump({**data, "kpt_names": {0: ["n", "l", "r"]}}))
    assert main(["split", str(root), "--val", "0.25"]) == 0
    written = yaml.safe_load((root / "autosplit.yaml").read_text())
    assert written["kpt_shape"] == [3, 3] and written["flip_idx"] == [0, 2, 1]
    assert written["kpt_oks_sigmas"] == [0.05, 0.1, 0.1]
    assert written["kpt_names"] == {0: ["n", "l", "r"]}
    train = read(root / "autosplit.yaml")
    np.testing.assert_allclose(train[0]["keypoints"], [[[50, 20, 2], [25, 20, 1], [0, 0, 0]]])


def test_check_data_of_one_dataset_checks_its_keypoints_without_being_asked(tmp_path, capsys):
    """check-data --format coco (or yolo) of a keypoint set said 'no problems found' and
    printed no keypoint line unless given keypoints=true, which only the reader's docs told:
    a COCO visibility of 3 went unseen until training. Keypoints are checked where the
    annotations have them; keypoints=false still leaves them out."""
    from tests.data.test_keypoints_data import _with_keypoints
    from tests.helpers import make_coco

    def bad(data):
        _with_keypoints(data)
        data["annotations"][0]["keypoints"][2] = 3

    root = make_coco(tmp_path / "coco", edit=bad)
    assert main(["check-data", "--format", "coco", "--images", str(root)]) == 1
    assert "visibility" in capsys.readouterr().out
    make_pose(tmp_path / "pose")
    argv = ["check-data", "--format", "yolo", "--root", str(tmp_path / "pose"), "--split", "train"]
    assert main(argv) == 0
    assert "keypoints: 3 per box; boxes labelling each (v > 0): point0 1" in capsys.readouterr().out
    assert main([*argv, "keypoints=false"]) == 0
    assert "keypoints: 3 per box" not in capsys.readouterr().out


def test_a_pose_dataset_without_flip_pairs_is_warned_of(tmp_path, capsys):
    """Without flip_idx (nor names) a flip leaves each point its index: a mirrored left eye
    stayed 'left', and nothing said so (Ultralytics turns its flips off then)."""
    data_yaml = make_pose(tmp_path)
    data = yaml.safe_load(data_yaml.read_text())
    del data["flip_idx"]
    data_yaml.write_text(yaml.safe_dump(data))
    argv = ["check-data", "--format", "yolo", "--root", str(data_yaml), "--split", "train"]
    assert main([*argv, "keypoints=true"]) == 0
    out = capsys.readouterr().out
    assert "unpaired keypoint" in out and "no flip_idx (nor kpt_names)" in out
    assert "give flip_idx (the keypoint each one becomes), or train without HorizontalFlip" in out
    assert read(data_yaml)[0]["keypoint_flip"] == [0, 1, 2]


def test_save_txt_of_a_model_trained_on_x_y_keypoints_writes_x_y_as_ultralytics(tmp_path):
    """A model trained on a kpt_shape [K, 2] set wrote ``x y v`` per keypoint with
    ``predict --save-txt``: 5 + 3K numbers a line, which the set's own data.yaml (5 + 2K)
    refused when the predictions were read back as labels. Ultralytics writes ``x y`` for a
    [K, 2] model; so does visionkit now (the head's kpt_dims, from the data, kept in the
    checkpoint's config and by convert's COCO json)."""
    from tests.data.test_keypoints_data import keypoint_config
    from visionkit.build import build_datasets, build_model
    from visionkit.config import load_config
    from visionkit.inference.predict import predict_files

    line = "0 0.5 0.5 0.6 0.8 0.5 0.5 0.25 0.5 0.75 0.5\n"  # 3 keypoints of x y
    data_yaml = make_pose(tmp_path / "ds", lines=line, kpt_shape=[3, 2])
    config = keypoint_config(train={"format": "yolo", "root": str(data_yaml), "split": "train"})
    cfg = load_config(config)
    model = build_model(cfg, build_datasets(cfg.data, needs=["boxes", "keypoints"]))
    assert model.heads["pose"].kpt_dims == 2
    assert model.meta["config"]["model"]["heads"]["pose"]["kpt_dims"] == 2
    out = tmp_path / "pred"
    images = tmp_path / "ds" / "images" / "val"
    predict_files(model, [images], out, conf=0.0, max_det=2, save_txt=True, progress=False)
    lines = (out / "labels" / "a.txt").read_text().splitlines()
    assert lines and all(len(text.split()) == 5 + 2 * 3 for text in lines)
    # the predictions read back as labels of the same set
    (tmp_path / "ds" / "labels" / "val" / "a.txt").write_text("\n".join(lines) + "\n")
    assert read(data_yaml, "val")[0]["keypoints"].shape == (len(lines), 3, 3)
    # a [K, 3] set's model keeps x y v, and convert's COCO json carries the dims
    out_json = tmp_path / "train.json"
    assert (
        main(["convert", "--from", "yolo", str(data_yaml), str(out_json), "--split", "train"]) == 0
    )
    assert json.loads(out_json.read_text())["categories"][0]["kpt_dims"] == 2
    again = build_dataset(
        {"format": "coco", "images": str(tmp_path / "ds"), "annotations": str(out_json)}
        | {"keypoints": True}
    )
    assert again.keypoint_schema.dims == 2
    coco = json.loads(out_json.read_text())
    coco["categories"][0]["kpt_dims"] = None  # null: the default, x y v (was bad data)
    out_json.write_text(json.dumps(coco))
    again = build_dataset(
        {"format": "coco", "images": str(tmp_path / "ds"), "annotations": str(out_json)}
        | {"keypoints": True}
    )
    assert again.keypoint_schema.dims == 3
    coco["categories"][0]["kpt_dims"] = 4
    out_json.write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"kpt_dims 4: expected 2 \(x y per keypoint"):
        build_dataset(
            {"format": "coco", "images": str(tmp_path / "ds"), "annotations": str(out_json)}
            | {"keypoints": True}
        )
    three = make_pose(tmp_path / "ds3")
    config = keypoint_config(train={"format": "yolo", "root": str(three), "split": "train"})
    cfg = load_config(config)
    model = build_model(cfg, build_datasets(cfg.data, needs=["boxes", "keypoints"]))
    assert model.heads["pose"].kpt_dims == 3
