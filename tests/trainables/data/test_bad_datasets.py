"""Hostile datasets, Aariz and ISBI (tests/bad_input.py says what each case must do)."""

from __future__ import annotations

from tests.bad_builds import (
    ANN,
    CSV_NAME,
    corrupt,
    drop_symbol,
    edit_csv,
    edit_json,
    folder_instead,
    isbi_lines,
    pixel_size,
    remove,
    replace_bytes,
    senior,
    set_item,
    study,
    truncate,
    truncated_jpeg,
)
from tests.bad_images import damaged_pixels, dangling, second_image, without_iend
from tests.bad_input import Case, case_tests

CASES: list[Case] = [
    # datasets
    Case(
        "data-annotation-is-a-folder",
        corrupt(folder_instead(f"train/{ANN}/Senior Orthodontists/synth00000.json")),
        ("Senior Orthodontists/synth00000.json: a folder, not an annotation file",),
    ),
    Case(
        "data-png-pixels-damaged-checksums-right",
        corrupt(damaged_pixels("valid/Cephalograms/synth00004.png")),
        ("synth00004.png: unreadable image",),
    ),
    Case(
        "data-png-without-iend",
        corrupt(without_iend("train/Cephalograms/synth00002.png")),
        ("synth00002.png: unreadable image",),
    ),
    Case(
        "data-two-images-of-one-id",
        corrupt(second_image("synth00000.jpg")),
        ("synth00000.jpg and synth00000.png: two images of id 'synth00000'",),
    ),
    Case(
        "data-image-a-broken-symlink",
        corrupt(dangling("synth00099.png", "gone.png")),
        ("synth00099.png: a broken symlink or a symlink loop, not an image file",),
    ),
    Case(
        "data-image-a-symlink-loop",
        corrupt(dangling("synth00099.png", "synth00099.png")),
        ("synth00099.png: a broken symlink or a symlink loop",),
    ),
    Case(
        "data-image-name-with-a-newline",
        corrupt(dangling("synth\n00099.png", "gone.png")),
        ("synth\\n00099.png: a broken symlink",),
    ),
    Case(
        "data-isbi-annotation-is-a-folder",
        corrupt(folder_instead("AnnotationsByMD/400_senior/001.txt"), fmt="isbi"),
        ("400_senior/001.txt: a folder, not an annotation file",),
    ),
    Case(
        "data-root-missing",
        study("dataset: {format: aariz, root: nowhere}"),
        ("bad.yaml: dataset.root: ", "nowhere: dataset folder missing"),
    ),
    Case("data-split-missing", corrupt(remove("valid")), ("valid: folder missing",)),
    Case(
        "data-csv-missing",
        corrupt(remove(CSV_NAME)),
        (f"{CSV_NAME}: pixel-size CSV missing", "never assumed"),
    ),
    Case(
        "data-pixel-size-id-missing",
        corrupt(edit_csv(lambda rows: rows[:1] + rows[2:])),
        ("synth00001.png", "no pixel size for id 'synth00001'", CSV_NAME),
    ),
    Case(
        "data-pixel-size-id-twice",
        corrupt(edit_csv(lambda rows: rows + [{**rows[0], "pixel_size": "0.2"}])),
        (f"{CSV_NAME}:8", "cephalogram_id 'synth00000' is listed twice"),
    ),
    Case(
        "data-csv-not-text",
        corrupt(replace_bytes(CSV_NAME, b"cephalogram_id,pixel_size\n\xff\xfe,0.1\n")),
        (f"{CSV_NAME}: not a readable CSV",),
    ),
    Case(
        "data-pixel-size-empty",
        corrupt(pixel_size("")),
        (f"{CSV_NAME}:3", "pixel_size is not a number"),
    ),
    Case(
        "data-pixel-size-zero",
        corrupt(pixel_size("0")),
        (f"{CSV_NAME}:3", "pixel_size must be > 0, got 0.0"),
    ),
    Case(
        "data-pixel-size-negative",
        corrupt(pixel_size("-0.1")),
        (f"{CSV_NAME}:3", "pixel_size must be > 0, got -0.1"),
    ),
    Case(
        "data-image-is-text",
        corrupt(replace_bytes("train/Cephalograms/synth00001.png", b"not an image")),
        ("synth00001.png: unreadable image",),
    ),
    Case(
        "data-image-truncated",
        corrupt(truncate("valid/Cephalograms/synth00004.png")),
        ("synth00004.png: unreadable image",),
    ),
    Case(
        "data-jpeg-truncated",
        corrupt(truncated_jpeg("train/Cephalograms/synth00003.png")),
        ("synth00003.jpg: unreadable image",),
    ),
    Case(
        "data-isbi-bmp-truncated",
        corrupt(truncate("RawImage/TrainingData/002.bmp"), fmt="isbi"),
        ("002.bmp: unreadable image",),
    ),
    Case(
        "data-annotation-malformed-json",
        corrupt(replace_bytes(f"train/{ANN}/Junior Orthodontists/synth00002.json", b"{")),
        ("synth00002.json: malformed landmark JSON (line 1",),
    ),
    Case(
        "data-annotation-missing",
        corrupt(remove(f"train/{ANN}/Junior Orthodontists/synth00002.json")),
        ("synth00002.json: annotation missing",),
    ),
    Case(
        "data-landmark-symbol-missing",
        corrupt(lambda root: edit_json(senior(root, "synth00000"), drop_symbol)),
        ("synth00000.json: landmarks[3].symbol missing",),
    ),
    Case(
        "data-landmark-symbol-unknown",
        corrupt(lambda root: edit_json(senior(root, "synth00000"), set_item(0, symbol="XX"))),
        ("synth00000.json: unknown landmark symbol 'XX'",),
    ),
    Case(
        "data-landmark-symbol-twice",
        corrupt(lambda root: edit_json(senior(root, "synth00000"), set_item(1, symbol="A"))),
        ("synth00000.json: landmarks[1].symbol 'A' appears twice",),
    ),
    Case(
        "data-landmark-outside-the-image",
        corrupt(
            lambda root: edit_json(
                senior(root, "synth00003"), set_item(14, value={"x": 80, "y": 7})
            )
        ),
        ("synth00003.json: landmark 'Go' must lie inside the 80x100 image synth00003.png",),
    ),
    Case(
        "data-isbi-fewer-than-19-lines",
        corrupt(isbi_lines("AnnotationsByMD/400_junior/002.txt", keep=12), fmt="isbi"),
        ("002.txt:13: expected 19 landmark lines",),
    ),
    Case(
        "data-isbi-landmark-outside-the-image",
        corrupt(isbi_lines("AnnotationsByMD/400_senior/003.txt", first="-4,10"), fmt="isbi"),
        ("003.txt: landmark 'S' must lie inside the 48x60 image 003.bmp, got (-4, 10)",),
    ),
]


AS_PROCESS = ("data-image-truncated",)
test_bad_input_is_one_line_exit_2_and_leaves_no_trace, test_the_real_process_prints_one_line = (
    case_tests(CASES, AS_PROCESS)
)
