"""A user's first hour with the data tools (``check-data``, ``split``) on their own COCO data:
what each says of the mistakes such files hold."""

from __future__ import annotations

import pytest

from tests.helpers import SIZE, make_coco, run, write_image

pytestmark = pytest.mark.reliability


def check(capsys, root, *args):
    return run(["check-data", "--format", "coco", "--images", root, *args], capsys)


def test_two_categories_of_one_name_are_a_warning_not_one_class_in_the_counts(tmp_path, capsys):
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "dog"}]
    code, out, _ = check(capsys, make_coco(tmp_path, categories=categories))
    assert code == 0  # training goes on: two classes, as the file says
    assert (
        "duplicate category name: category ids 1, 2: all named 'cat': separate classes to the "
        "model, one name in check-data's counts" in out
    )
    assert run(["check-data", "--strict", "--format", "coco", "--images", tmp_path], capsys)[0]


def test_a_category_name_that_is_no_string_is_a_warning_not_a_traceback(tmp_path, capsys):
    """The duplicate-name check stopped check-data with "TypeError: unhashable type: 'list'"
    on a category named ``["cat"]``, where it printed its report before."""
    categories = [{"id": 1, "name": ["cat"]}, {"id": 2, "name": "dog"}, {"id": 3, "name": "dog"}]
    code, out, _ = check(capsys, make_coco(tmp_path, categories=categories))
    assert code == 0, out
    assert (
        "bad category name: category id 1: name ['cat'] is not a string: the class is named "
        "\"['cat']\"" in out
    )
    assert "duplicate category name: category ids 2, 3: all named 'dog'" in out


def test_a_null_category_name_and_a_number_beside_its_text_are_warned_of(tmp_path, capsys):
    # "name": null was the class "None", unwarned; a category named 1 beside one named "1"
    # were two classes of one name with no duplicate-name warning
    categories = [{"id": 1, "name": None}, {"id": 2, "name": 1}, {"id": 3, "name": "1"}]
    code, out, _ = check(capsys, make_coco(tmp_path, categories=categories))
    assert code == 0, out
    assert (
        "bad category name: category id 1: name None is not a string: the class is named '1' "
        "(its id)" in out
    )
    assert "bad category name: category id 2: name 1 is not a string: the class is named '1'" in out
    assert "duplicate category name: category ids 1, 2, 3: all named '1'" in out
    assert "None" not in out.split("instances per class")[1].splitlines()[0]


def test_text_category_ids_are_one_error_per_category_not_one_per_annotation(tmp_path, capsys):
    # each annotation naming category "1" was an "unknown category" error of its own, on top
    # of the categories' own errors
    def text_ids(data):
        data["categories"] = [dict(c) for c in data["categories"]]  # not the shared list's
        for entry in (*data["categories"], *data["annotations"]):
            key = "id" if "name" in entry else "category_id"
            entry[key] = str(entry[key])

    code, out, _ = check(capsys, make_coco(tmp_path, num_images=6, edit=text_ids))
    assert code == 1
    assert (
        "bad entry: categories[0]: needs an integer 'id', got '1' (text: write 1, unquoted)" in out
    )
    assert out.count("unknown category") == 1
    assert (
        "unknown category: 6 annotations (annotation ids 101, 102, 103, 104, 105, ...): "
        "category_id '1', '2' is text, not an integer id of categories []: write the numbers "
        "unquoted, here and in categories" in out
    )


def test_a_null_width_and_height_are_read_from_the_image_as_missing_ones(tmp_path, capsys):
    def unknown_size(data):
        data["images"][0]["width"] = data["images"][0]["height"] = None  # some exporters

    code, out, _ = check(capsys, make_coco(tmp_path, edit=unknown_size))
    assert code == 0, out
    assert (
        f"size from the image: images[0] (id 1): no width / height in the file: {SIZE}x{SIZE}"
        in out
    )
    assert "bad entry" not in out


def test_check_data_prints_each_warning_once_in_its_report(tmp_path, capsys):
    def clipped(data):
        data["annotations"][0]["bbox"] = [SIZE - 4, 0, 20, 8]  # reaches past the right edge

    code, out, err = check(capsys, make_coco(tmp_path, edit=clipped))
    assert code == 0
    assert out.count("box clipped: annotation id 101 (image id 1, images/1.png)") == 1
    assert "box clipped" not in err  # was logged as well, before the report said it again


def test_split_of_a_coco_file_with_repeated_image_ids_names_them_and_writes_nothing(
    tmp_path, capsys
):
    def repeated(data):
        data["images"][2]["id"] = 2  # a merge of two exports, each numbered from 1

    root = make_coco(tmp_path, edit=repeated)
    code, _, err = run(["split", root / "annotations.json", "--val", "0.5"], capsys)
    assert code == 1
    assert "image id 2: 'images/2.png', 'images/3.png'" in err
    assert sorted(p.name for p in root.iterdir()) == ["annotations.json", "images"]


def ultralytics_yaml(root, val: str = "images/val"):
    for split in ("train", "val"):
        write_image(root / "images" / split / "a.png", seed=1)
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: {val}\nnames: [cat]\n")
    return root / "data.yaml"


def test_check_data_of_an_ultralytics_yaml_checks_each_split_it_names(tmp_path, capsys):
    data_yaml = ultralytics_yaml(tmp_path)
    code, out, _ = run(["check-data", "--format", "yolo", "--root", data_yaml], capsys)
    assert code == 0, out  # was "give the split to read ... or convert's --split train"
    assert "data.train: yolo dataset" in out and "data.val: yolo dataset" in out
    assert "check-data: no problems found in 2 datasets" in out
    (tmp_path / "images" / "val").rename(tmp_path / "images" / "valid")
    code, out, _ = run(["check-data", "--format", "yolo", "--root", data_yaml], capsys)
    assert code == 1
    assert "data.val: " in out and "val: images/val does not exist (looked for " in out
    code, out, _ = run(
        ["check-data", "--format", "yolo", "--root", data_yaml, "--split", "train"], capsys
    )
    assert code == 0 and "check-data: no problems found in 1 dataset" in out


def test_a_category_without_a_name_key_is_said_to_lack_it(tmp_path, capsys):
    # it was warned as "name None is not a string", a value the file does not hold
    categories = [{"id": 1}, {"id": 2, "name": "dog"}]
    code, out, _ = check(capsys, make_coco(tmp_path, categories=categories))
    assert code == 0, out
    assert (
        "bad category name: category id 1: has no 'name' key: the class is named '1' (its id)"
        in out
    )
    assert "None" not in out


def test_a_text_category_id_is_called_text_only_where_its_number_is_a_category(tmp_path, capsys):
    # category_id "7" with categories [1, 2] was told "is text ... write the numbers
    # unquoted, here and in categories", which would leave it unknown and the categories fine
    def quoted(data):
        data["annotations"][0]["category_id"] = "7"
        data["annotations"][1]["category_id"] = "1"

    code, out, _ = check(capsys, make_coco(tmp_path, edit=quoted))
    assert code == 1
    assert (
        "unknown category: annotation id 101 (image id 1): category_id 7 is not in categories [1, 2]"
        in out
    )
    assert (
        "unknown category: annotation id 102 (image id 2): category_id '1' is text, not an "
        "integer id of categories [1, 2]: write the numbers unquoted\n" in out
    )
    assert "here and in categories" not in out


def test_a_reader_parameter_s_list_item_is_named_in_brackets(tmp_path, capsys):
    # it was "class_names.1: Input should be a valid string", a key no config has
    code, _, err = check(capsys, make_coco(tmp_path), "class_names=[cat, 1]")
    assert code == 2
    assert "error: invalid configuration:\n  class_names[1]: Input should be a valid string" in err
    code, _, err = check(capsys, tmp_path, "--root", str(tmp_path))
    assert code == 2 and "error: invalid command-line option:\n  --root: format coco takes" in err


def test_a_reader_parameter_that_is_not_yaml_is_refused_not_a_traceback(tmp_path, capsys):
    # strict=!!bool maybe (or strict=[1) was a PyYAML traceback
    for value in ("!!bool maybe", "[1"):
        code, _, err = check(capsys, make_coco(tmp_path), f"strict={value}")
        assert code == 2 and "Traceback" not in err
        assert "strict: Input should be a valid boolean" in err
