"""check_dataset / format_report on good, missing and broken dataset folders."""

from __future__ import annotations

from fixtures_data import label_map, make_context, make_voc, write_palette_png

from cagnet.data import check_dataset, format_report


def test_a_complete_voc_folder_is_ok(tmp_path):
    root = make_voc(tmp_path / "voc")
    report = check_dataset("voc", root)
    assert report["ok"] and not report["missing"] and not report["problems"]
    assert report["splits"]["train"] == {"images": 4, "expected": 10_582}
    assert report["splits"]["test"] == {"images": 2, "expected": 1_449}
    assert report["checked_labels"] == 6
    present = report["classes_present"]
    assert present["person"] == 3 and present["sheep"] == 2 and present["bus"] == 0
    text = format_report(report)
    assert "voc at" in text and "OK" in text and "person (3)" in text
    assert "10,582" in text  # the count differs from the paper's: said in a note


def test_a_missing_folder_says_what_and_how(tmp_path):
    report = check_dataset("voc", tmp_path / "absent")
    assert not report["ok"] and "does not exist" in report["missing"][0]
    text = format_report(report)
    assert "NOT READY" in text and "VOCtrainval_11-May-2012.tar" in text


def test_a_partial_folder_lists_the_missing_parts(tmp_path):
    root = make_context(tmp_path / "ctx")
    (root / "VOCdevkit/VOC2010/JPEGImages/2008_000011.jpg").unlink()
    report = check_dataset("context", root)
    assert not report["ok"]
    assert any("2008_000011.jpg" in m for m in report["missing"])
    assert report["checked_labels"] == 2  # the remaining pairs are still checked


def test_bad_labels_are_reported_with_their_file(tmp_path):
    root = make_voc(tmp_path / "voc")
    write_palette_png(root / "VOCdevkit/VOC2012/SegmentationClass/2007_000101.png",
                      label_map([15, 99]))
    report = check_dataset("voc", root, sample=None)
    assert not report["ok"]
    assert len(report["problems"]) == 1 and "2007_000101.png" in report["problems"][0]
    assert "[99]" in format_report(report)


def test_missing_sbd_is_a_note_not_a_failure(tmp_path):
    report = check_dataset("voc", make_voc(tmp_path / "voc", sbd=False))
    assert report["ok"] and any("1,464 VOC train images" in n for n in report["notes"])


def test_the_toy_world_needs_nothing(tmp_path):
    report = check_dataset("toy", sample=50)
    assert report["ok"] and report["checked_labels"] == 50
    assert report["classes_present"]["grass"] > 0
    assert "(generated)" in format_report(report)
