"""Writing the shipped model files, manifest.json and the model card (models/README.md)."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.inference.runtime import import_runtime

MODEL_FILE = "model.tflite"
FLOAT_FILE = "model_float.tflite"
LICENSE = "CC-BY-4.0"
ATTRIBUTION = [
    {
        "dataset": "Chilli leaf classification dataset",
        "source": "GitHub ai-agriculture-circuits-and-systems/chilli_leaf_classification "
        "(Mendeley Data tf9dtfz9m6)",
    },
    {
        "dataset": "Black gram plant leaf disease dataset",
        "source": "GitHub ai-agriculture-circuits-and-systems/"
        "blackgram_plant_leaf_disease_classification (Mendeley Data zfcv9fmrgv)",
    },
    {
        "dataset": "iBean / bean disease (Uganda) dataset",
        "source": "GitHub ai-agriculture-circuits-and-systems/bean_disease_uganda",
    },
]
CHANGES = "centre crop, resize to 224x224, JPEG re-encoding, relabelling into six classes"


def write_model_files(
    out: Path, labels: Sequence[str], float_model: bytes, int8_model: bytes
) -> None:
    """Write model.tflite (int8), model_float.tflite and labels.txt into ``out``."""
    (out / MODEL_FILE).write_bytes(int8_model)
    (out / FLOAT_FILE).write_bytes(float_model)
    (out / "labels.txt").write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")


def _file_entry(path: Path) -> dict[str, Any]:
    content = path.read_bytes()
    return {"file": path.name, "sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}


def _quantization(path: Path) -> dict[str, Any]:
    interpreter = import_runtime().interpreter_class(model_path=str(path))
    scheme = {}
    for name, detail in (
        ("input", interpreter.get_input_details()[0]),
        ("output", interpreter.get_output_details()[0]),
    ):
        scale, zero_point = detail["quantization"]
        scheme[name] = {"dtype": detail["dtype"].__name__, "scale": scale, "zero_point": zero_point}
    return scheme


def build_manifest(
    out: Path,
    version: str,
    labels: Sequence[str],
    size: int,
    training: dict[str, Any],
    data: dict[str, Any],
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest.json content for the model files in ``out``."""
    quant = _quantization(out / MODEL_FILE)
    return {
        "name": "plant_health",
        "version": version,
        "task": "single-leaf plant-health classification",
        "labels": list(labels),
        "files": {"int8": _file_entry(out / MODEL_FILE), "float": _file_entry(out / FLOAT_FILE)},
        "input": {
            "size": [size, size],
            "layout": "NHWC, batch 1",
            "colour_order": "RGB",
            "value_range": [0, 255],
            "normalisation": "none outside the model: pixels 0..255 go in, "
            "the network rescales to [-1, 1] itself",
            "preprocessing": "centre square crop, cv2.INTER_AREA resize to input size "
            "(frames 3x the input side or more are first halved by 2x2 box averaging)",
            "dtype": quant["input"]["dtype"],
        },
        "output": {
            "kind": "probabilities",
            "activation": "softmax",
            "dtype": quant["output"]["dtype"],
        },
        "quantization": {
            "scheme": "full-integer post-training quantization (int8 weights and activations, "
            "per-channel conv weights), int8 input and output",
            "params_source": "the runtime reads scale and zero point from the model's "
            "input/output tensors; the values here are for information only",
            "calibration": "240 training images (160 plain, 80 augmented)",
            **{k: v for k, v in quant.items()},
        },
        "data": {
            "name": "leaf-health",
            "images": data.get("images"),
            "split_file": "split.csv",
            "split_counts": data.get("split_counts"),
            "split": "grouped by photo_group, stratified by class and crop, 70/15/15 by images",
            "fingerprint_sha256": data["fingerprint"],
            "fingerprint_method": "sha256 over sorted lines "
            "'file,class,crop,photo_group,split,sha256(image bytes)\\n'",
        },
        "training": training,
        "metrics": metrics or {},
        "license": LICENSE,
        "attribution": {
            "license": "Creative Commons Attribution 4.0 International "
            "(https://creativecommons.org/licenses/by/4.0/)",
            "sources": ATTRIBUTION,
            "changes": CHANGES,
        },
    }


def _metrics_table(test: dict[str, Any], labels: Sequence[str]) -> list[str]:
    rows = [
        "| class | test images | int8 precision | int8 recall | int8 F1 | float F1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        q, f = test["int8"]["per_class"][label], test["float"]["per_class"][label]
        rows.append(
            f"| {label} | {q['support']} | {q['precision']:.3f} | {q['recall']:.3f} "
            f"| {q['f1']:.3f} | {f['f1']:.3f} |"
        )
    rows.append(
        f"| **macro** | {test['images']} | | | **{test['int8']['macro_f1']:.3f}** "
        f"| {test['float']['macro_f1']:.3f} |"
    )
    return rows


def _confusion(test: dict[str, Any], labels: Sequence[str]) -> list[str]:
    cm = test["int8"]["confusion_matrix"]["rows_true_cols_pred"]
    short = [label[:10] for label in labels]
    rows = ["| true \\ predicted | " + " | ".join(short) + " |", "|---" * (len(labels) + 1) + "|"]
    rows += [
        f"| {label} | " + " | ".join(str(v) for v in row) + " |"
        for label, row in zip(labels, cm, strict=True)
    ]
    return rows


def _per_crop(test: dict[str, Any]) -> list[str]:
    rows = [
        "| crop | images | accuracy | pest_damage F1 | nutrient_deficiency F1 "
        "| predicted pest / nutrient |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for crop, r in test["per_crop_int8"].items():
        pc = r["per_class"]
        pest = f"{pc['pest_damage']['f1']:.3f}" if "pest_damage" in pc else "-"
        nutr = f"{pc['nutrient_deficiency']['f1']:.3f}" if "nutrient_deficiency" in pc else "-"
        fp = r["predicted_as_chilli_only_classes"]
        rows.append(
            f"| {crop} | {r['images']} | {r['accuracy']:.3f} | {pest} | {nutr} "
            f"| {fp['pest_damage']} / {fp['nutrient_deficiency']} |"
        )
    return rows


def _verdicts(manifest: dict[str, Any]) -> str:
    """Calibration, the out-of-distribution score and metrics with "unknown" counted wrong."""
    cal, ood = manifest.get("calibration"), manifest.get("ood")
    if not cal or not ood:
        return "Not calibrated; no out-of-distribution score (every image is assessed)."
    labels = manifest["labels"]
    shipped = ood.get("candidate", ood["method"])
    chosen = ood["candidates"][shipped]
    lines = [
        f"- Calibration: {cal['method']}. Temperature **{cal['temperature']}**. Expected "
        f"calibration error ({cal['ece_bins']} bins) on validation "
        f"{cal['ece_val']['before']:.3f} -> **{cal['ece_val']['after']:.3f}**, on test "
        f"{cal['ece_test']['before']:.3f} -> **{cal['ece_test']['after']:.3f}**. Scores the "
        "runtime reports, and alert thresholds, are these calibrated probabilities.",
        f'- "Unknown": out-of-distribution score **{ood["method"]}**'
        + (f" ({ood['embedding']})" if "embedding" in ood else "")
        + f". Threshold {ood['threshold']} = {ood['threshold_rule']}; chosen by "
        f"{ood['chosen_by']}. {chosen['test_assessed_share']:.1%} of test leaves are assessed.",
        "",
        "AUROC (in-distribution test leaves vs each set; 1.0 = perfectly separated) and the "
        "share of each set the shipped threshold calls unknown:",
        "",
    ]
    sets = list(chosen["auroc"])
    lines.append("| method | all sets | " + " | ".join(sets) + " | test assessed |")
    lines.append("|---" * (len(sets) + 3) + "|")
    for method, row in ood["candidates"].items():
        name = f"**{method}**" if method == shipped else method
        cells = " | ".join(f"{row['auroc'][n]:.3f}" for n in sets)
        lines.append(
            f"| {name} | {row['auroc_all']:.3f} | {cells} | {row['test_assessed_share']:.3f} |"
        )
    unknown = " | ".join(f"{chosen['unknown_share'][n]:.2f}" for n in sets)
    lines.append(f"| unknown share, shipped | | {unknown} | |")
    sizes = ", ".join(f"{n} {k}" for n, k in ood["sets"].items())
    lines += ["", f"Set sizes: {sizes} (made by `models/ood_sets.py`)."]
    rep = manifest["metrics"]["test"].get("int8_unknown_counted_wrong")
    if rep:
        lines += [
            "",
            f"Test split with unknown counted as wrong: macro-F1 **{rep['macro_f1']:.3f}**, "
            f"accuracy {rep['accuracy']:.3f}, assessed share **{rep['assessed_share']:.3f}**.",
            "",
            "| class | F1 (unknown counted wrong) | recall |",
            "|---|---:|---:|",
        ]
        for label in labels:
            pc = rep["per_class"][label]
            lines.append(f"| {label} | {pc['f1']:.3f} | {pc['recall']:.3f} |")
    lines += _shipped_rule(manifest)
    return "\n".join(lines)


def _shipped_rule(manifest: dict[str, Any]) -> list[str]:
    """Test metrics under the device's full verdict rule (models.evaluate --record-rule)."""
    rule = manifest.get("verdict_rule")
    test = manifest["metrics"]["test"].get("int8_shipped_rule")
    val = manifest["metrics"]["val"].get("int8_shipped_rule")
    if not rule or not test:
        return []
    lines = [
        "",
        f"The device's verdict rule: {rule['rule']}. Under it (test split, unknown counted "
        f"as wrong): macro-F1 **{test['macro_f1']:.3f}**, accuracy {test['accuracy']:.3f}, "
        f"assessed share **{test['assessed_share']:.3f}**"
        + (f" (validation {val['macro_f1']:.3f}, {val['assessed_share']:.3f})" if val else "")
        + ". Per class F1: "
        + ", ".join(f"{k} {test['per_class'][k]['f1']:.3f}" for k in manifest["labels"])
        + ".",
    ]
    return lines


def _loco(manifest: dict[str, Any]) -> str:
    """The leave-one-crop-out false-alarm table."""
    loco = manifest.get("evaluation", {}).get("leave_one_crop_out")
    if not loco:
        return "Not measured for this model."
    lines = [
        f"Protocol: {loco['protocol']}. Goal: false-alarm rate <= 5 % for each held-out crop.",
        "",
        "| held-out crop | trained on | epochs | healthy leaves | false alarms (device rule) "
        "| any problem label | without OOD | unknown (OOD) | OOD AUROC | in-domain macro-F1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    derived = False
    for crop, r in loco["per_held_out_crop"].items():
        derived = derived or "false_alarm_rate_source" in r
        before = r.get("earlier_run_false_alarm_rate")
        earlier = "" if before is None else f" ({before:.1%} in an earlier run)"
        lines.append(
            f"| {crop} | {' + '.join(r['trained_on'])} | {r['epochs']} | "
            f"{r['held_out_healthy_leaves']} | **{r['false_alarm_rate']:.1%}**{earlier} | "
            f"{r.get('false_alarm_rate_any_problem_label', r['false_alarm_rate']):.1%} | "
            f"{r['false_alarm_rate_without_ood']:.1%} | {r['unknown_share']:.1%} | "
            f"{r['ood_auroc_test_vs_held_out_healthy']:.3f} | "
            f"{r['in_domain_test_macro_f1_int8']:.3f} |"
        )
    lines += [
        "",
        "Device rule: a problem label needs calibrated confidence "
        f"{manifest.get('verdict_rule', {}).get('problem_min_confidence', 0.7)} or more "
        "(`health.problem_min_confidence`), else the verdict is unknown; any problem label: "
        "every in-distribution problem label, as the device gave before that rule.",
    ]
    if derived:
        lines += [
            "",
            "Rows marked in the manifest with `false_alarm_rate_source` were recounted from "
            "the recorded runs (their problem labels at confidence 0.7 or more), not re-run.",
        ]
    lines += [
        "",
        "Training is not bit-reproducible, so a re-run of the same protocol moves these rates "
        "by a few points (earlier-run figures in brackets).",
    ]
    return "\n".join(lines)


def _synthetic(manifest: dict[str, Any]) -> str:
    """The synthetic-camera stand-in results."""
    syn = manifest.get("evaluation", {}).get("synthetic_camera")
    if not syn:
        return "Not measured for this model."
    h = syn["healthy_phase"]
    return "\n".join(
        [
            f"Measured by `python -m models.stand_ins` on the device's synthetic camera "
            f"(1280x960 frames and the 160-px tiles with plant of the 640x480 analysis image; "
            f"a problem verdict = assessed, not healthy, confidence >= "
            f"{syn['alert_confidence']}).",
            "",
            "| case | frames | tiles | problem verdicts, frames | problem verdicts, tiles "
            "| unknown, frames | unknown, tiles |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| healthy phase (days {h['days'][0]:g}-{h['days'][1]:g}, yellowing from day "
            f"{h['yellowing_onset_day']:g}) | {h['frames']} | {h['tiles']} | "
            f"{h['whole_frame_problem_share']:.1%} | {h['tile_problem_share']:.1%} | "
            f"{h['whole_frame_unknown_share']:.1%} | {h['tile_unknown_share']:.1%} |",
            f"| no plant in view | {syn['no_plant']['frames']} | | | | "
            f"{syn['no_plant']['whole_frame_unknown_share']:.0%} | "
            f"{syn['no_plant']['tile_unknown_share']:.0%} |",
            f"| lights at 5 % | {syn['lights_at_5_percent']['frames']} | | | | "
            f"{syn['lights_at_5_percent']['whole_frame_unknown_share']:.0%} | "
            f"{syn['lights_at_5_percent']['tile_unknown_share']:.0%} |",
            "",
            f"{h['frames_with_a_problem_tile_share']:.1%} of healthy-phase frames have at "
            "least one problem tile. Caveat: the outlier-exposure images include synthetic "
            "canopies from the same renderer (other seeds), so these figures are optimistic "
            "for real canopy photos.",
        ]
    )


def write_card(manifest: dict[str, Any], path: Path) -> None:
    """Render the model card from the manifest."""
    labels, t = manifest["labels"], manifest["training"]
    test = manifest["metrics"]["test"]
    crops = test["per_crop_int8"]
    template = (Path(__file__).parent / "card_template.md").read_text(encoding="utf-8")
    text = template.format(
        version=manifest["version"],
        size=manifest["input"]["size"][0],
        params=t["parameters"],
        epochs=t["epochs"],
        selected_epoch=t["selected_epoch"],
        seed=t["seed"],
        test_images=test["images"],
        int8_macro=test["int8"]["macro_f1"],
        float_macro=test["float"]["macro_f1"],
        int8_acc=test["int8"]["accuracy"],
        agreement=test["int8_float_top1_agreement"],
        val_macro=manifest["metrics"]["val"]["int8"]["macro_f1"],
        int8_kib=manifest["files"]["int8"]["bytes"] // 1024,
        float_kib=manifest["files"]["float"]["bytes"] // 1024,
        metrics_table="\n".join(_metrics_table(test, labels)),
        confusion="\n".join(_confusion(test, labels)),
        per_crop="\n".join(_per_crop(test)),
        fingerprint=manifest["data"]["fingerprint_sha256"],
        chilli_acc=crops.get("chilli", {}).get("accuracy", 0.0),
        bean_acc=crops.get("bean", {}).get("accuracy", 0.0),
        blackgram_acc=crops.get("blackgram", {}).get("accuracy", 0.0),
        pest_precision=test["int8"]["per_class"]["pest_damage"]["precision"],
        nutrient_precision=test["int8"]["per_class"]["nutrient_deficiency"]["precision"],
        verdicts=_verdicts(manifest),
        loco=_loco(manifest),
        synthetic=_synthetic(manifest),
    )
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    """Re-render the model card from an existing manifest.json."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/plant_health"))
    parser.add_argument("--card", type=Path, default=Path("models/README.md"))
    args = parser.parse_args(argv)
    write_card(json.loads((args.model / "manifest.json").read_text(encoding="utf-8")), args.card)


if __name__ == "__main__":
    main()
