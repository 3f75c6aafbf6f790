"""GenEval (``ablations.geneval``, ``ablations geneval``): the official rules on scripted detections (a stub
detector and a stub colour step, every task passing and failing for each reason), the colour step on solid
colour crops with a tiny random CLIP, the whole command end to end on a tiny random Mask2Former, resume, and
bad input as one line and exit 2. The real CLIP's colour choices are checked when $GENEVAL_CLIP names its
weights (a file or a folder), else skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ablations.cli import app
from ablations.geneval.colour import BACKGROUND, load_clip, masked_crop
from ablations.geneval.metadata import COLORS, TASKS, read_folder
from ablations.geneval.rules import Detection, keep_objects, relative_position
from ablations.geneval.score import score_folder, score_image, summarise
from mambabench.errors import UserError

META = {  # one line per task, in GenEval's shape
    "single_object": {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a bench"},
    "two_object": {
        "tag": "two_object",
        "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1}],
        "prompt": "a cat and a dog",
    },
    "counting": {
        "tag": "counting",
        "include": [{"class": "clock", "count": 3}],
        "exclude": [{"class": "clock", "count": 4}],
        "prompt": "three clocks",
    },
    "colors": {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a red car"},
    "position": {
        "tag": "position",
        "include": [{"class": "cup", "count": 1}, {"class": "fork", "count": 1, "position": ["left of", 0]}],
        "prompt": "a fork left of a cup",
    },
    "color_attr": {
        "tag": "color_attr",
        "include": [{"class": "cup", "count": 1, "color": "blue"}, {"class": "vase", "count": 1, "color": "green"}],
        "prompt": "a blue cup and a green vase",
    },
}


def _det(x: float, y: float, score: float = 0.95, size: float = 10.0) -> Detection:
    return Detection((x, y, x + size, y + size), score)


def _judge(tag: str, detections: dict, colours: dict | None = None) -> tuple[bool, str]:
    """One image through a stub detector (these detections) and a stub colour step (class -> colour)."""
    image = Image.new("RGB", (64, 64))
    paint = lambda image, name, found: [(colours or {}).get(name, "red")] * len(found)  # noqa: E731
    correct, reason, _ = score_image(image, META[tag], lambda _: detections, paint)
    return correct, reason


CASES = [  # (task, detections, colours, correct, reason)
    ("single_object", {"bench": [_det(5, 5)]}, None, True, ""),
    ("single_object", {"cat": [_det(5, 5)]}, None, False, "expected bench>=1, found 0"),
    ("single_object", {"bench": [_det(5, 5, 0.3)]}, None, False, "expected bench>=1, found 0"),  # not above 0.3
    ("two_object", {"cat": [_det(5, 5)], "dog": [_det(30, 5, 0.31)]}, None, True, ""),
    ("two_object", {"cat": [_det(5, 5)]}, None, False, "expected dog>=1, found 0"),
    ("counting", {"clock": [_det(i * 12, 5) for i in range(3)]}, None, True, ""),
    ("counting", {"clock": [_det(i * 12, 5) for i in range(2)]}, None, False, "expected clock>=3, found 2"),
    ("counting", {"clock": [_det(i * 12, 5) for i in range(4)]}, None, False, "expected clock<4, found 4"),
    (  # below the counting threshold 0.9: the third clock at 0.85 does not count, a fourth at 0.5 does not hurt
        "counting",
        {"clock": [_det(0, 5), _det(12, 5), _det(24, 5, 0.85), _det(36, 5, 0.5)]},
        None,
        False,
        "expected clock>=3, found 2",
    ),
    ("colors", {"car": [_det(5, 5)]}, {"car": "red"}, True, ""),
    ("colors", {"car": [_det(5, 5)]}, {"car": "blue"}, False, "expected red car>=1, found 0 red; and 1 blue"),
    ("colors", {}, None, False, "expected car>=1, found 0"),
    ("position", {"cup": [_det(40, 20)], "fork": [_det(5, 20)]}, None, True, ""),
    (
        "position",
        {"cup": [_det(5, 20)], "fork": [_det(40, 20)]},
        None,
        False,
        "expected fork left of target, found right of target",
    ),
    (
        "position",
        {"cup": [_det(20, 20)], "fork": [_det(21, 21)]},
        None,
        False,
        "expected fork left of target, found  target",
    ),
    ("position", {"fork": [_det(5, 20)]}, None, False, "expected cup>=1, found 0\nno target for fork to be left of"),
    ("color_attr", {"cup": [_det(5, 5)], "vase": [_det(30, 5)]}, {"cup": "blue", "vase": "green"}, True, ""),
    (
        "color_attr",
        {"cup": [_det(5, 5)], "vase": [_det(30, 5)]},
        {"cup": "blue", "vase": "white"},
        False,
        "expected green vase>=1, found 0 green; and 1 white",
    ),
    ("color_attr", {"cup": [_det(5, 5)]}, {"cup": "blue"}, False, "expected vase>=1, found 0"),
]


@pytest.mark.parametrize(("tag", "detections", "colours", "correct", "reason"), CASES)
def test_rules_on_scripted_detections(tag, detections, colours, correct, reason):
    assert _judge(tag, detections, colours) == (correct, reason)


def test_every_task_has_a_passing_and_a_failing_case():
    assert {c[0] for c in CASES if c[3]} == set(TASKS) == {c[0] for c in CASES if not c[3]}


def test_keep_objects_limits_sorts_and_nms():
    many = {"cup": [_det(i, 0, 0.31 + i / 100) for i in range(20)]}
    kept = keep_objects(many, "colors")["cup"]
    assert len(kept) == 16 and [d.score for d in kept] == sorted((d.score for d in kept), reverse=True)
    assert kept[0].score == pytest.approx(0.50)
    overlapping = {"cup": [_det(0, 0, 0.9), _det(1, 0, 0.8), _det(40, 0, 0.7)]}
    assert len(keep_objects(overlapping, "colors")["cup"]) == 3  # the official default max_overlap 1.0: no NMS
    assert [d.score for d in keep_objects(overlapping, "colors", max_overlap=0.5)["cup"]] == [0.9, 0.7]
    assert keep_objects({"cup": [_det(0, 0, 0.2)]}, "colors") == {}


def test_relative_position_margin_and_diagonals():
    a = _det(0, 0, size=10)
    assert relative_position(_det(30, 0), a) == {"right of"}
    assert relative_position(_det(0, 30), a) == {"below"}
    assert relative_position(_det(30, 30), a) == {"right of", "below"}  # a diagonal counts for both
    assert relative_position(_det(1.5, 0), a) == set()  # closer than 0.1 x (10 + 10) = 2 pixels
    assert relative_position(_det(4, 0), a) == set()  # (4 - 2) / 4 = 0.5: not past 0.5
    assert relative_position(_det(5, 0), a) == {"right of"}  # (5 - 2) / 5 = 0.6


def test_summary_is_the_unweighted_mean_of_the_tasks():
    rows = [{"tag": "counting", "correct": c, "metadata": "a"} for c in (True, False, False, False)]
    rows += [{"tag": "colors", "correct": True, "metadata": "b"}, {"tag": "colors", "correct": True, "metadata": "c"}]
    rows = [r | {"detector": "d", "clip": "c"} for r in rows]
    summary = summarise(rows)
    assert summary["tasks"] == {"counting": 0.25, "colors": 1.0} and summary["overall"] == 0.625
    assert summary["correct_prompts"] == 1.0 and summary["correct_images"] == 3 / 6
    assert summary["missing_tasks"] == ["single_object", "two_object", "position", "color_attr"]


# ---- folders, the colour step, the command ---------------------------------------------------------------


def _folder(root: Path, per_prompt: int = 2, size: int = 48) -> tuple[Path, Path]:
    """GenEval's layout, one prompt per task, solid colour images; and the metadata file."""
    images, lines = root / "images", []
    for index, tag in enumerate(TASKS):
        folder = images / f"{index:05d}"
        (folder / "samples").mkdir(parents=True)
        (folder / "metadata.jsonl").write_text(json.dumps(META[tag]) + "\n")
        for n in range(per_prompt):
            pixels = np.full((size, size, 3), (40 * index, 255 - 30 * n, 90), dtype=np.uint8)
            pixels[size // 4 : size // 2, size // 4 : size // 2] = 255
            Image.fromarray(pixels).save(folder / "samples" / f"{n:05d}.png")
        lines.append(json.dumps(META[tag]))
    metadata = root / "evaluation_metadata.jsonl"
    metadata.write_text("\n".join(lines) + "\n")
    return images, metadata


class _Stub:
    """A stub detector counting its calls (a cup, a fork left of it, three clocks, ...)."""

    backend, name = "stub", "scripted"

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return {"cup": [_det(30, 5)], "fork": [_det(2, 5)], "clock": [_det(i * 12, 30) for i in range(3)]}


class _Paint:
    backend, name = "stub", "red"

    def __call__(self, image, classname, found):
        return ["red"] * len(found)


def test_score_folder_resumes_without_rescoring(tmp_path):
    images, metadata = _folder(tmp_path)
    prompts = read_folder(images, per_prompt=2)
    detector, out = _Stub(), tmp_path / "out"
    first = score_folder(prompts[:2], images, detector, _Paint(), out)
    assert detector.calls == 4 and len(first) == 4
    with open(out / "results.jsonl", "a") as handle:
        handle.write('{"filename": "000')  # a line cut off by a kill
    rows = score_folder(prompts, images, detector, _Paint(), out)
    assert detector.calls == 12 and len(rows) == 12  # the first four were not scored again
    assert len((out / "results.jsonl").read_text().splitlines()) == 12
    by_task = summarise(rows)["tasks"]
    assert by_task["position"] == 1.0 and by_task["counting"] == 1.0 and by_task["single_object"] == 0.0
    assert json.loads(rows[0]["metadata"]) == META["single_object"]
    assert rows[0]["reason"] == "expected bench>=1, found 0" and rows[0]["filename"] == "00000/samples/00000.png"


def _tiny_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    words = [
        "a",
        "photo",
        "of",
        "object",
        "-",
        "colored",
        *COLORS,
        *{c["class"] for m in META.values() for c in m["include"]},
    ]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1} | {f"{w}</w>": i + 2 for i, w in enumerate(dict.fromkeys(words))}
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=40,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _tiny_mask2former(folder: Path) -> Path:
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    swin = SwinConfig(
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        image_size=64,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=swin,
        hidden_dim=32,
        num_queries=8,
        encoder_layers=1,
        decoder_layers=2,
        feature_size=32,
        mask_feature_size=32,
        dim_feedforward=32,
        num_attention_heads=2,
        encoder_feedforward_dim=32,
        num_labels=80,
        common_stride=4,
    )
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(config)
    with torch.no_grad():  # confident queries, so some detections pass the thresholds
        model.class_predictor.weight.mul_(50)
    model.save_pretrained(folder)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 64}, size_divisor=32).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("geneval-models")
    return _tiny_mask2former(root / "mask2former"), _tiny_clip(root / "clip")


def test_masked_crop_greys_the_background(tmp_path):
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:15, 10:20] = True
    crop = np.asarray(masked_crop(image, Detection((8.0, 4.0, 22.0, 16.0), 0.9, mask)))
    assert crop.shape == (12, 14, 3)
    assert tuple(crop[0, 0]) == tuple(int(BACKGROUND[i : i + 2], 16) for i in (1, 3, 5))  # #999999 outside
    assert tuple(crop[5, 5]) == (200, 10, 10)  # the object inside its mask
    assert np.asarray(masked_crop(image, Detection((0.0, 0.0, 5.0, 5.0), 0.9))).shape == (5, 5, 3)  # no mask: box


def test_colour_step_on_solid_crops_with_a_tiny_clip(models):
    clip = load_clip(models[1])
    rgb = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "white": (250, 250, 250)}
    names = []
    for value in rgb.values():
        image = Image.new("RGB", (32, 32), value)
        names += clip(image, "car", [_det(4, 4, size=20), _det(0, 0, size=32)])
    assert len(names) == 8 and set(names) <= set(COLORS)
    assert clip.classifier("car").shape == (8, len(COLORS)) and "car" in clip._classifiers  # cached per class
    again = load_clip(models[1])(Image.new("RGB", (32, 32), rgb["red"]), "car", [_det(4, 4, size=20)])
    assert again == names[:1]  # deterministic


@pytest.mark.skipif(not os.environ.get("GENEVAL_CLIP"), reason="set GENEVAL_CLIP to CLIP ViT-L/14 weights")
def test_real_clip_names_solid_colours():
    clip = load_clip(Path(os.environ["GENEVAL_CLIP"]))
    for colour, value in {
        "red": (220, 20, 20),
        "green": (20, 170, 40),
        "blue": (20, 40, 220),
        "yellow": (240, 220, 20),
    }.items():
        assert clip(Image.new("RGB", (224, 224), value), "car", [_det(20, 20, size=180)]) == [colour]


def _invoke(*args):
    return CliRunner().invoke(app, ["geneval", *map(str, args)])


def test_command_end_to_end_and_resume(tmp_path, models):
    images, metadata = _folder(tmp_path)
    store = tmp_path / "results.sqlite"
    common = ["--images", images, "--metadata", metadata, "--detector", models[0], "--clip", models[1]]
    done = _invoke(*common, "--per-prompt", 2, "--store", store, "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(summary["tasks"]) == list(TASKS) and summary["images"] == 12 and summary["prompts"] == 6
    assert summary["overall"] == pytest.approx(sum(summary["tasks"].values()) / 6)
    assert summary["detector"] == "transformers: Mask2Former mask2former"
    rows = [json.loads(line) for line in (images / "geneval" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {"filename", "tag", "prompt", "correct", "reason", "metadata", "details"} <= set(rows[0])
    assert json.loads((images / "geneval" / "summary.json").read_text())["overall"] == summary["overall"]

    from results.store import ResultsStore

    stored = ResultsStore(store).measurements()
    assert sorted(r["metric"] for r in stored) == sorted(["geneval_overall", *(f"geneval_{t}" for t in TASKS)])
    assert {r["unit"] for r in stored} == {"fraction"} and "Mask2Former" in stored[0]["detail"]

    before = (images / "geneval" / "results.jsonl").read_text()
    table = _invoke(*common, "--per-prompt", 2, "--store", store)  # resumes: nothing left to score, the same numbers
    assert table.exit_code == 0, table.output
    assert "overall" in table.stdout and "color_attr" in table.stdout
    assert (images / "geneval" / "results.jsonl").read_text() == before


def test_command_on_a_run_scores_its_newest_geneval_folder(tmp_path, models):
    from ablations.experiment import RunConfig
    from results.store import ResultsStore

    run = tmp_path / "run"
    RunConfig(model="dit-s/2").save(run)
    none = _invoke("--run", run, "--detector", models[0], "--clip", models[1])
    assert none.exit_code == 2 and "no images in GenEval's layout" in none.stderr
    images, _ = _folder(run / "prompts" / "evaluation_metadata" / "dpm-solver-20steps", per_prompt=1)
    store = tmp_path / "store.sqlite"
    done = _invoke("--run", run, "--per-prompt", 1, "--detector", models[0], "--clip", models[1], "--store", store)
    assert done.exit_code == 0, done.output
    assert (images / "geneval" / "results.jsonl").is_file()
    assert {r["model"] for r in ResultsStore(store).measurements()} == {"dit-s/2"}
    both = _invoke("--run", run, "--images", images)
    assert both.exit_code == 2 and "one of them" in both.stderr


def _bad_metadata(images, metadata):
    metadata.write_text(json.dumps({"tag": "single_object", "caption": "a bench"}) + "\n")


def _missing_sample(images, metadata):
    (images / "00003" / "samples" / "00001.png").unlink()


def _not_an_image(images, metadata):
    (images / "00002" / "samples" / "00000.png").write_bytes(b"not a png")


def _not_coco(images, metadata):
    line = json.dumps({"tag": "single_object", "include": [{"class": "unicorn", "count": 1}], "prompt": "a unicorn"})
    (images / "00000" / "metadata.jsonl").write_text(line + "\n")


@pytest.mark.parametrize(
    ("spoil", "detector", "words"),
    [
        (_bad_metadata, 0, "not GenEval metadata"),
        (_missing_sample, 0, "missing sample"),
        (_not_an_image, 0, "does not decode"),
        (_not_coco, 0, "not one of the 80 COCO classes"),
        (None, 1, "not Mask2Former"),
        (None, 2, "download facebook/mask2former-swin-small-coco-instance"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, models, spoil, detector, words):
    images, metadata = _folder(tmp_path)
    if spoil:
        spoil(images, metadata)
    detectors = (models[0], models[1], tmp_path / "absent")
    args = ["--images", images, "--metadata", metadata, "--per-prompt", 2, "--detector", detectors[detector]]
    done = _invoke(*args, "--clip", models[1], "--store", tmp_path / "store.sqlite")
    assert done.exit_code == 2, done.output
    assert len(done.stderr.strip().splitlines()) == 1 and words in done.stderr, done.stderr


def test_read_folder_checks_against_the_metadata(tmp_path):
    images, metadata = _folder(tmp_path)
    from ablations.geneval.metadata import read_metadata

    entries = read_metadata(metadata)
    assert len(read_folder(images, entries, per_prompt=2)) == 6
    with pytest.raises(UserError, match="has no folder"):
        read_folder(images, [*entries, entries[0]], per_prompt=2)
    with pytest.raises(UserError, match="missing sample .*00002.png"):
        read_folder(images, entries, per_prompt=3)


# ---- a table scored with GenEval (ablations.tables.geneval_rows) ------------------------------------------------


def test_table_rows_scored_with_geneval_land_in_index_store_and_report(tmp_path, models, monkeypatch):
    """T2MD's Table 1 on a micro cut of its smoke-text preset (the teacher, the baseline and the T2MD row; FID on
    pixel features): without GenEval's inputs the report is FID and says so; given them, the rerun keeps the FID
    scores, samples the metadata's prompts, scores them with the tiny Mask2Former and CLIP, and GenEval lands in
    the score files, the index, the store and the report, where higher is better; a third run adds nothing."""
    from dataclasses import replace

    from test_tables import PixelFeatures, _micro

    from ablations.tables import TABLES
    from ablations.tables.layout import index_file
    from ablations.tables.report import build_rows
    from results.store import ResultsStore

    for variable in ("METADATA", "DETECTOR", "CLIP"):  # the command sets them: restored after the test
        monkeypatch.setenv(f"MAMBABENCH_GENEVAL_{variable}", "")
    monkeypatch.setattr("ablations.evaluate.InceptionFeatures", PixelFeatures)
    table = TABLES["t2md-table1"]
    _micro(monkeypatch, table.id, "smoke-text")
    monkeypatch.setitem(table.presets, "micro", replace(table.presets["micro"], geneval_per_prompt=1))
    metadata = tmp_path / "evaluation_metadata.jsonl"
    metadata.write_text("".join(json.dumps(META[tag]) + "\n" for tag in TASKS))
    runs, store = tmp_path / "runs", tmp_path / "store.sqlite"
    run = ["run", "table1", "--preset", "micro", "--variant", "baseline", "--variant", "t2md", "--runs", runs]
    run += ["--threads", 1, "--store", store]
    fid = CliRunner().invoke(app, list(map(str, run)))
    assert fid.exit_code == 0, fid.output
    assert "ours: FID, not GenEval" in fid.output and "--geneval-metadata" in fid.output

    geneval = [*run, "--geneval-metadata", metadata, "--detector", models[0], "--clip", models[1]]
    done = CliRunner().invoke(app, list(map(str, geneval)))
    assert done.exit_code == 0, done.output
    assert done.output.count("scored already") == 3 and ": training " not in done.output  # FID kept
    assert "ours: GenEval (detector transformers: Mask2Former mask2former, CLIP transformers: " in done.output
    index = index_file(runs, table, table.presets["micro"])
    rows = json.loads(index.read_text())
    assert {r["variant"] for r in rows} == {"teacher", "baseline", "t2md"}
    for row in rows:
        assert 0 <= row["geneval_overall"] <= 1 and row["geneval_images"] == 6 and row["fid"] > 0
        assert row["geneval_overall"] == pytest.approx(sum(row[f"geneval_{t}"] for t in TASKS) / 6)
        assert len(list(Path(row["run"]).glob("scores/*-geneval1x-evaluation_metadata-*.json"))) == 1
    measured = ResultsStore(store).measurements()
    overall = [m for m in measured if m["metric"] == "geneval_overall"]
    assert len(overall) == 3 and {m["unit"] for m in overall} == {"fraction"}
    assert len([m for m in measured if m["metric"] == "fid"]) == 3  # not recorded again
    assert len([m for m in measured if m["metric"].startswith("geneval_")]) == 3 * 7

    again = CliRunner().invoke(app, list(map(str, geneval)))
    assert again.exit_code == 0, again.output
    assert "GenEval," not in again.output and len(ResultsStore(store).measurements()) == len(measured)
    report = CliRunner().invoke(app, ["report", "table1", "--preset", "micro", "--runs", str(runs), "--json"])
    reported = {r["variant"]: r for r in map(json.loads, report.stdout.strip().splitlines())}
    assert reported["t2md"]["ours_metric"] == "geneval_overall" and reported["t2md"]["paper_overall"] == 0.485
    assert "ours: GenEval (detector " in (index.parent / "report.md").read_text()

    # higher is better: a baseline below the T2MD row is worse, as in the paper (FID's direction would say better)
    for row in rows:
        row["geneval_overall"] = {"teacher": 0.6, "baseline": 0.2, "t2md": 0.5}[row["variant"]]
    index.write_text(json.dumps(rows))
    by_variant = {r["variant"]: r for r in build_rows(table, "micro", runs)}
    assert by_variant["baseline"]["ours_effect"] == "worse" and by_variant["baseline"]["agrees"] == "yes"
    assert by_variant["teacher"]["ours_effect"] == "better" and by_variant["teacher"]["paper_effect"] == "same"
