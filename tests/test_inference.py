"""The on-device runtime with the shipped model and the real LiteRT interpreter."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.errors import ModelError
from edge.inference import (
    Assessment,
    DelegateError,
    HealthPrediction,
    ModelInfo,
    ModelIntegrityError,
    PlantHealthClassifier,
    bundled_model_dir,
    load_classifier,
)
from edge.inference.preprocess import quantize_lut, resize_square

pytest.importorskip("ai_edge_litert", reason="LiteRT (ai-edge-litert) is not installed")


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return bundled_model_dir()


@pytest.fixture(scope="module")
def manifest(model_dir: Path) -> dict:
    return json.loads((model_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def clf(model_dir: Path) -> PlantHealthClassifier:
    return load_classifier(model_dir, delegate="cpu", threads=1)


@pytest.fixture
def model_copy(tmp_path: Path, model_dir: Path) -> Path:
    for name in ("model.tflite", "model_float.tflite", "manifest.json", "labels.txt"):
        shutil.copy(model_dir / name, tmp_path / name)
    return tmp_path


def _leafish(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 1] = 140
    return np.clip(img + rng.integers(0, 60, img.shape), 0, 255).astype(np.uint8)


def test_bundled_model_dir_is_the_shipped_model(model_dir: Path) -> None:
    assert (model_dir / "model.tflite").is_file()
    assert (model_dir / "manifest.json").is_file()


def test_shipped_model_hash_matches_manifest(model_dir: Path, manifest: dict) -> None:
    for entry in manifest["files"].values():
        digest = hashlib.sha256((model_dir / entry["file"]).read_bytes()).hexdigest()
        assert digest == entry["sha256"], entry["file"]


def test_load_with_none_uses_bundled_model(manifest: dict) -> None:
    clf = load_classifier(None, delegate="cpu", threads=1)
    assert clf.info.sha256 == manifest["files"]["int8"]["sha256"]


def test_info(clf: PlantHealthClassifier, manifest: dict) -> None:
    assert isinstance(clf.info, ModelInfo)
    assert clf.info.name == "plant_health" == manifest["name"]
    assert clf.info.version == manifest["version"]
    assert clf.info.backend == "litert-cpu"
    with pytest.raises(AttributeError):
        clf.info.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("shape", [(480, 640), (224, 224), (1080, 720), (50, 90)])
def test_classify_returns_all_labels(
    clf: PlantHealthClassifier, manifest: dict, shape: tuple
) -> None:
    pred = clf.classify(_leafish(*shape))
    assert isinstance(pred, HealthPrediction)
    assert list(pred.scores) == manifest["labels"]
    assert sum(pred.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert all(0.0 <= v <= 1.0 for v in pred.scores.values())
    assert pred.label == max(pred.scores, key=pred.scores.__getitem__)
    assert pred.confidence == pred.scores[pred.label]


def test_classify_is_repeatable_and_ignores_outside_of_centre(clf: PlantHealthClassifier) -> None:
    img = _leafish(300, 400)
    first = clf.classify(img)
    img[:, :50] = 0  # outside the centre square
    img[:, 350:] = 255
    assert clf.classify(img) == first


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3))]
)
def test_classify_rejects_non_rgb_uint8(clf: PlantHealthClassifier, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        clf.classify(bad)


def test_quantization_params_come_from_the_model(
    clf: PlantHealthClassifier, model_dir: Path
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_dir / "model.tflite"))
    in_scale, in_zp = interp.get_input_details()[0]["quantization"]
    out_scale, out_zp = interp.get_output_details()[0]["quantization"]
    assert (clf.input_quant.scale, clf.input_quant.zero_point) == (in_scale, in_zp)
    assert (clf.output_quant.scale, clf.output_quant.zero_point) == (out_scale, out_zp)
    assert in_scale > 0 and out_scale > 0


def test_input_encoding_matches_quantization_formula(clf: PlantHealthClassifier) -> None:
    q = clf.input_quant
    lut = quantize_lut(q.scale, q.zero_point, np.int8)
    pixels = np.arange(256)
    expected = np.clip(np.round(pixels / q.scale) + q.zero_point, -128, 127)
    assert np.array_equal(lut.astype(np.int64), expected.astype(np.int64))


def _bare_outputs(model_dir: Path, img: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Dequantized outputs of the int8 model run by a plain interpreter, by tensor name."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_dir / "model.tflite"), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    scale, zp = inp["quantization"]
    x = resize_square(img, size).astype(np.float64)
    interp.set_tensor(
        inp["index"], np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)[None]
    )
    interp.invoke()
    out = {}
    for detail in interp.get_output_details():
        o_scale, o_zp = detail["quantization"]
        raw = interp.get_tensor(detail["index"])[0].astype(np.float64)
        out[detail["name"]] = (raw - o_zp) * o_scale
    return out


def test_scores_are_the_temperature_scaled_logits_of_a_bare_interpreter(
    clf: PlantHealthClassifier, model_dir: Path, manifest: dict
) -> None:
    img = _leafish(360, 480)
    outputs = _bare_outputs(model_dir, img, clf.input_size)
    logits = outputs[manifest["output"]["tensors"]["int8"]["logits"]]
    temperature = manifest["calibration"]["temperature"]
    assert clf.temperature == temperature != 1.0
    expected = np.exp(logits / temperature - (logits / temperature).max())
    got = np.array(list(clf.classify(img).scores.values()))
    assert np.allclose(got, expected / expected.sum(), atol=1e-6)
    # the softmax output and the logits output agree on the top label
    probs = outputs[manifest["output"]["tensors"]["int8"]["probabilities"]]
    assert int(np.argmax(probs)) == int(np.argmax(got))


def test_float_variant_loads(model_dir: Path, manifest: dict) -> None:
    clf = load_classifier(model_dir, delegate="cpu", threads=1, variant="float")
    assert clf.info.sha256 == manifest["files"]["float"]["sha256"]
    assert sum(clf.classify(_leafish(200, 200)).scores.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_corrupted_model_refuses_to_load(model_copy: Path, damage: str) -> None:
    path = model_copy / "model.tflite"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        for i in range(100, len(data), 997):
            data[i] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as err:
        load_classifier(model_copy, delegate="cpu")
    assert isinstance(err.value, ModelError)
    assert str(path) in str(err.value)
    assert "sha256" in str(err.value)


def test_corrupt_model_with_matching_hash_refuses_to_load(model_copy: Path) -> None:
    path = model_copy / "model.tflite"
    path.write_bytes(path.read_bytes()[:4096])
    manifest = json.loads((model_copy / "manifest.json").read_text())
    manifest["files"]["int8"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=re.escape(str(path))):
        load_classifier(model_copy, delegate="cpu")


def test_wrong_hash_in_manifest_refuses_to_load(model_copy: Path, manifest: dict) -> None:
    changed = json.loads(json.dumps(manifest))
    changed["files"]["int8"]["sha256"] = "0" * 64
    (model_copy / "manifest.json").write_text(json.dumps(changed))
    with pytest.raises(ModelIntegrityError) as err:
        load_classifier(model_copy, delegate="cpu")
    message = str(err.value)
    assert "model.tflite" in message and "0" * 64 in message
    assert manifest["files"]["int8"]["sha256"] in message


def test_missing_model_file_refuses_to_load(model_copy: Path) -> None:
    (model_copy / "model.tflite").unlink()
    with pytest.raises(ModelIntegrityError, match=re.escape("model.tflite")):
        load_classifier(model_copy, delegate="cpu")


def test_missing_manifest_refuses_to_load(model_copy: Path) -> None:
    (model_copy / "manifest.json").unlink()
    with pytest.raises(ModelError, match=re.escape("manifest.json")):
        load_classifier(model_copy, delegate="cpu")


def test_labels_file_must_match_manifest(model_copy: Path) -> None:
    (model_copy / "labels.txt").write_text("healthy\nsick\n")
    with pytest.raises(ModelError, match=re.escape("labels.txt")):
        load_classifier(model_copy, delegate="cpu")


def _has_edgetpu() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libedgetpu.so.1")
    except OSError:
        return False
    return True


def test_auto_delegate_without_edgetpu_runs_on_cpu(model_dir: Path) -> None:
    if _has_edgetpu():
        pytest.skip("an EdgeTPU is attached")
    clf = load_classifier(model_dir, delegate="auto", threads=2)
    assert clf.info.backend == "litert-cpu"


def test_required_edgetpu_without_device_is_a_clear_error(model_dir: Path) -> None:
    if _has_edgetpu():
        pytest.skip("an EdgeTPU is attached")
    with pytest.raises(DelegateError, match=re.escape("libedgetpu.so.1")) as err:
        load_classifier(model_dir, delegate="edgetpu")
    assert isinstance(err.value, ModelError)


def test_nonexistent_delegate_path_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "libnothing_delegate.so"
    with pytest.raises(DelegateError, match=re.escape("libnothing_delegate.so")):
        load_classifier(model_dir, delegate=str(missing))


def test_unloadable_delegate_library_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "libfake_delegate.so"
    fake.write_bytes(b"not a shared library")
    with pytest.raises(DelegateError, match=re.escape("libfake_delegate.so")):
        load_classifier(model_dir, delegate=str(fake))


@pytest.mark.parametrize("threads", [0, -1])
def test_bad_thread_count(model_dir: Path, threads: int) -> None:
    with pytest.raises(ModelError, match="threads"):
        load_classifier(model_dir, delegate="cpu", threads=threads)


def test_unknown_variant(model_dir: Path) -> None:
    with pytest.raises(ModelError, match="variant"):
        load_classifier(model_dir, delegate="cpu", variant="fp16")


def test_no_runtime_installed_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    import builtins

    from edge.inference import RuntimeUnavailableError

    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith(("ai_edge_litert", "tflite_runtime")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(RuntimeUnavailableError) as err:
        load_classifier(model_dir, delegate="cpu")
    assert "ai-edge-litert" in str(err.value) and "tflite-runtime" in str(err.value)


def test_runtime_does_not_import_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from edge.inference import load_classifier; "
        "load_classifier(None, delegate='cpu'); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# --- Assessment: calibrated scores, out-of-distribution score, embedding, batches ---


def _checkerboard() -> np.ndarray:
    """A magenta and white checkerboard: nothing like a leaf photo."""
    yy, xx = np.mgrid[0:240, 0:320]
    img = np.full((240, 320, 3), 255, np.uint8)
    img[((yy // 20 + xx // 20) % 2).astype(bool)] = (255, 0, 255)
    return img


def test_assess_scores_are_calibrated_probabilities(
    clf: PlantHealthClassifier, manifest: dict
) -> None:
    result = clf.assess(_leafish(480, 640))
    assert isinstance(result, Assessment)
    assert list(result.scores) == manifest["labels"]
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0.0 <= v <= 1.0 for v in result.scores.values())
    assert result.label == max(result.scores, key=result.scores.__getitem__)
    assert result.confidence == result.scores[result.label]
    assert result.scores == clf.classify(_leafish(480, 640)).scores


def test_assess_embedding_is_the_normalised_penultimate_layer(
    clf: PlantHealthClassifier, model_dir: Path, manifest: dict
) -> None:
    img = _leafish(300, 300)
    result = clf.assess(img)
    assert clf.embedding_size == len(result.embedding) > len(manifest["labels"])
    assert result.embedding.dtype == np.float32 and result.embedding.ndim == 1
    assert float(np.linalg.norm(result.embedding)) == pytest.approx(1.0, abs=1e-5)
    raw = _bare_outputs(model_dir, img, clf.input_size)[
        manifest["output"]["tensors"]["int8"]["embedding"]
    ]
    assert np.allclose(result.embedding, raw / np.linalg.norm(raw), atol=1e-6)


def test_threshold_and_method_come_from_the_manifest(
    clf: PlantHealthClassifier, manifest: dict
) -> None:
    assert clf.ood_threshold == manifest["ood"]["threshold"]
    result = clf.assess(_leafish(200, 200))
    assert result.in_distribution == (result.ood_score <= manifest["ood"]["threshold"])


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((480, 640, 3), np.uint8),  # lens cap on / lights off
        np.full((480, 640, 3), 255, np.uint8),  # blown out
        _checkerboard(),
    ],
    ids=["black", "white", "checkerboard"],
)
def test_unlike_anything_trained_on_is_not_in_distribution(
    clf: PlantHealthClassifier, frame: np.ndarray
) -> None:
    result = clf.assess(frame)
    assert not result.in_distribution
    assert result.ood_score > clf.ood_threshold
    assert sum(result.scores.values()) == pytest.approx(1.0)  # scores are still reported
    assert result.label in result.scores


def _images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(count):
        img = _leafish(120 + 40 * i, 160 + 30 * i)
        img[..., i % 3] = rng.integers(0, 256, img.shape[:2])
        out.append(img.astype(np.uint8))
    return out


@pytest.mark.parametrize("count", [1, 2, 7])
def test_assess_batch_equals_assess_per_image(clf: PlantHealthClassifier, count: int) -> None:
    images = _images(count)
    batch = clf.assess_batch(images)
    single = [clf.assess(img) for img in images]
    assert len(batch) == count
    for b, s in zip(batch, single, strict=True):
        assert b.label == s.label
        assert b.in_distribution == s.in_distribution
        assert b.ood_score == pytest.approx(s.ood_score, rel=1e-6, abs=1e-6)
        assert b.scores == pytest.approx(s.scores, abs=1e-9)
        assert np.allclose(b.embedding, s.embedding, atol=1e-7)


def test_batch_sizes_can_change_back_and_forth(clf: PlantHealthClassifier) -> None:
    images = _images(4)
    first = clf.assess_batch(images)
    clf.assess(images[0])
    again = clf.assess_batch(images[:3])
    assert [a.label for a in again] == [a.label for a in first[:3]]
    for a, b in zip(again, first, strict=False):
        assert a.scores == pytest.approx(b.scores)


def test_assess_batch_rejects_empty_and_bad_images(clf: PlantHealthClassifier) -> None:
    with pytest.raises(ValueError, match="at least one"):
        clf.assess_batch([])
    with pytest.raises(ValueError, match="HxWx3"):
        clf.assess_batch([_leafish(50, 50), np.zeros((10, 10), np.uint8)])
    assert clf.assess(_leafish(50, 50)).label  # still usable afterwards


def _old_manifest(model_copy: Path) -> None:
    """Rewrite the copy's manifest as models before calibration shipped it."""
    manifest = json.loads((model_copy / "manifest.json").read_text())
    for key in ("calibration", "ood"):
        manifest.pop(key)
    manifest["output"].pop("tensors")
    (model_copy / "manifest.json").write_text(json.dumps(manifest))


def test_old_manifest_loads_with_temperature_one_and_no_ood(
    model_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _old_manifest(model_copy)
    with caplog.at_level("INFO", logger="edge.inference.manifest"):
        old = load_classifier(model_copy, delegate="cpu", threads=1)
    assert "no calibration" in caplog.text
    assert "no out-of-distribution" in caplog.text
    assert old.temperature == 1.0
    assert old.embedding_size == len(old.labels)
    for frame in (np.zeros((100, 100, 3), np.uint8), _leafish(200, 200)):
        result = old.assess(frame)
        assert result.in_distribution and result.ood_score == 0.0
        assert sum(result.scores.values()) == pytest.approx(1.0)
        assert float(np.linalg.norm(result.embedding)) == pytest.approx(1.0, abs=1e-5)
    batch = old.assess_batch(_images(3))
    for b, image in zip(batch, _images(3), strict=True):
        assert b.scores == pytest.approx(old.assess(image).scores)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda m: m["calibration"].update(temperature=-1), "temperature"),
        (lambda m: m["calibration"].update(temperature="hot"), "temperature"),
        (lambda m: m["ood"].update(method="vibes"), "ood.method"),
        (lambda m: m["ood"].pop("threshold"), "ood.threshold"),
        (lambda m: m["ood"]["arrays"]["centre"].update(base64="!!"), "centre"),
        (lambda m: m["ood"]["arrays"].pop("projection"), "projection"),
        (lambda m: m["output"]["tensors"]["int8"].update(embedding="nope"), "nope"),
    ],
)
def test_bad_calibration_or_ood_settings_are_named(
    model_copy: Path, edit: object, words: str
) -> None:
    manifest = json.loads((model_copy / "manifest.json").read_text())
    edit(manifest)  # type: ignore[operator]
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=re.escape(words)):
        load_classifier(model_copy, delegate="cpu")


def test_one_interpreter_for_all_batch_sizes_when_no_second_can_be_built(
    clf: PlantHealthClassifier, model_dir: Path
) -> None:
    import dataclasses

    from edge.inference.manifest import read_manifest
    from edge.inference.runtime import open_model

    manifest = read_manifest(model_dir)
    opened = dataclasses.replace(open_model(manifest, "int8", "cpu", 1), reopen=None)
    single = PlantHealthClassifier(opened, manifest)  # as with a hardware delegate
    images = _images(3)
    for batch in (single.assess_batch(images), [single.assess(i) for i in images]):
        for got, want in zip(batch, clf.assess_batch(images), strict=True):
            assert got.label == want.label
            assert got.scores == pytest.approx(want.scores, abs=1e-9)
