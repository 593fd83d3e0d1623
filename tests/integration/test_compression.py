"""Compressed variants of a small real model, in the repo's model server and through the stage.

The candidate is a real taxi model trained in-process on 3,000 rows of the sample; the
variants are built by the real code (tensorflow-model-optimization pruning, float16/int8
weights, a distilled student), served by ``aimass.serving.server`` and judged by the stage
against a real MLflow registry (SQLite). Nothing of the part under test is replaced.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from runkit import run_request, training_result
from testkit import TAXI_SPEC, write_partition

from aimass.data.spec import DatasetSpec, load_spec
from aimass.platform.records import CompressionResult, GateDecision
from aimass.platform.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATASET = "taxi_compress"


def _spec_raw(compression: dict[str, Any]) -> dict[str, Any]:
    raw = dict(yaml.safe_load(TAXI_SPEC.read_text(encoding="utf-8")))
    raw["name"] = DATASET
    raw["compression"] = {"enabled": True, "latency_requests": 5, **compression}
    return raw


@pytest.fixture(scope="module")
def trained(taxi_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A clean partition of 3,000 sample rows and a candidate trained on it (3 epochs)."""
    import tensorflow as tf

    from models.tabular.export import export_saved_model
    from models.tabular.inputs import load_arrays
    from models.tabular.model import build_model

    base = tmp_path_factory.mktemp("compress")
    spec = DatasetSpec.from_dict(_spec_raw({}), origin="test")
    partition = write_partition(taxi_csv, base / "partition", spec, files=1)
    features, labels = load_arrays(partition, spec, "train")
    model = build_model(spec, adapt_data=features)
    model.fit(
        {k: tf.constant(v) for k, v in features.items()},
        labels.astype(np.float32).reshape(-1, 1),
        epochs=3,
        batch_size=128,
        verbose=0,
    )
    return {"partition": partition, "candidate": export_saved_model(model, spec, base / "cand")}


def test_every_variant_is_a_savedmodel_the_model_server_serves_with_the_same_signature(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    from aimass.serving.latency import batch_of, sandbox
    from aimass.training.compression import build_variants
    from models.tabular.inputs import load_arrays

    spec = DatasetSpec.from_dict(_spec_raw({"fine_tune_epochs": 1}), origin="test")
    built = build_variants(
        spec,
        saved_model_dir=trained["candidate"],
        partition=trained["partition"],
        out_dir=tmp_path / "variants",
    )
    assert [b["name"] for b in built] == ["pruned", "float16", "int8", "distilled"]
    assert not [b for b in built if b.get("error")], built
    facts = {b["name"]: b for b in built}
    assert facts["pruned"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert facts["distilled"]["parameters"] < facts["float16"]["parameters"]
    folders = [trained["candidate"], *(Path(b["saved_model_dir"]) for b in built)]
    holdout, _ = load_arrays(trained["partition"], spec, "holdout")
    rows = batch_of(holdout, 32)
    with sandbox(DATASET, folders) as client:
        signatures = []
        outputs = []
        for version in range(1, len(folders) + 1):
            sig = client.metadata_grpc(DATASET, version).signature_def["serving_default"]
            signatures.append(
                (
                    {k: (v.dtype, len(v.tensor_shape.dim)) for k, v in sig.inputs.items()},
                    {k: (v.dtype, len(v.tensor_shape.dim)) for k, v in sig.outputs.items()},
                )
            )
            outputs.append(client.predict_grpc(DATASET, rows, version=version)["probabilities"])
    assert all(s == signatures[0] for s in signatures), signatures
    assert all(o.shape == (32,) for o in outputs)
    candidate, _pruned, half, int8, _distilled = outputs
    # Reduced-precision weights compute in float32: the answers barely move.
    assert np.abs(half - candidate).max() < 5e-3
    assert np.abs(int8 - candidate).max() < 2e-2


def test_fine_tuning_a_pruned_clone_leaves_the_candidate_as_it_was(
    trained: dict[str, Path],
) -> None:
    """The variants built after the pruned one start from the candidate, not from a teacher
    whose shared output layer the fine-tune moved."""
    import tensorflow as tf

    from models.tabular import compress
    from models.tabular.inputs import load_arrays

    spec = DatasetSpec.from_dict(_spec_raw({}), origin="test")
    features, labels = load_arrays(trained["partition"], spec, "train")
    feed = {k: tf.constant(v[:256]) for k, v in features.items()}
    teacher = compress.load_keras(trained["candidate"])
    before = teacher.predict(feed, verbose=0)
    compress.prune(
        teacher, spec, features, labels, sparsity=0.5, epochs=1, batch_size=128, learning_rate=0.01
    )
    np.testing.assert_array_equal(teacher.predict(feed, verbose=0), before)


@pytest.fixture
def env(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    (tmp_path / "root" / "conf" / "datasets").mkdir(parents=True)
    monkeypatch.setenv("AIMASS_ROOT", str(tmp_path / "root"))
    return Settings.from_env()


def _registered(settings: Settings, trained: dict[str, Path], compression: dict[str, Any]) -> Any:
    """The spec written to the conf dir and the candidate registered as version 1."""
    from aimass.platform import tracking

    path = settings.conf_dir / "datasets" / f"{DATASET}.yaml"
    path.write_text(yaml.safe_dump(_spec_raw(compression)), encoding="utf-8")
    with tracking.start_run(settings, DATASET, name="candidate") as mlrun:
        mlrun.folder(trained["candidate"], tracking.MODEL_ARTIFACT)
    version = tracking.register_version(
        settings, DATASET, run_id=mlrun.run_id, run_key="aimass_retrain/manual__1", tags={}
    )
    return mlrun.run_id, version


def _gate(run: dict[str, Any], version: str) -> dict[str, Any]:
    return GateDecision(
        passed=True,
        deploy=True,
        verdict="passed",
        dataset=DATASET,
        ds=run["ds"],
        run_id=run["run_id"],
        candidate_version=version,
        task="binary",
        primary_metric="auc",
    ).dump()


def _stage_inputs(
    settings: Settings, trained: dict[str, Path], compression: dict[str, Any], tmp_path: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    run_id, version = _registered(settings, trained, compression)
    run = run_request(
        dataset=DATASET, clean_dir=trained["partition"], report_dir=tmp_path / "report"
    )
    model = training_result(
        saved_model_dir=trained["candidate"], registry_version=version, mlflow_run_id=run_id
    )
    return run, model, _gate(run, version)


@pytest.fixture
def server(env: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An empty model server that deploy_model finds through the settings."""
    from aimass.serving.client import ServingClient
    from aimass.serving.config import server_config, write_config
    from aimass.serving.rollout import serving_config_path
    from aimass.serving.server import ModelServer

    write_config(serving_config_path(env), server_config([]))
    model_server = ModelServer(config_file=serving_config_path(env), poll_seconds=0.5)
    model_server.start()
    client = ServingClient(model_server.grpc_target, model_server.rest_url)
    monkeypatch.setenv("AIMASS_SERVING_GRPC_PORT", client.grpc_target.rsplit(":", 1)[1])
    monkeypatch.setenv("AIMASS_SERVING_REST_PORT", client.rest_url.rsplit(":", 1)[1])
    try:
        yield client
    finally:
        client.close()
        model_server.stop()


def test_compression_off_deploys_the_candidate_and_says_so(
    env: Settings, trained: dict[str, Path], tmp_path: Path
) -> None:
    from aimass.stages.compress import compress_candidate

    run, model, gate = _stage_inputs(env, trained, {"enabled": False}, tmp_path)
    result = compress_candidate(run, model, gate)
    assert (result.enabled, result.chosen, result.variants) == (False, None, [])
    assert (result.registry_version, result.saved_model_dir) == ("1", str(trained["candidate"]))
    assert "compression is off" in result.why


def test_a_variant_over_its_loss_bar_is_never_deployed_the_best_clearing_one_is(
    env: Settings,
    server: Any,
    trained: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from aimass.evaluation.metrics import predict
    from aimass.platform import tracking
    from aimass.stages.compress import compress_candidate
    from aimass.stages.retrain import deploy_model
    from models.tabular.inputs import load_arrays

    # The one-unit student trained one epoch is the smallest variant by far, and far worse
    # than the candidate: its metric loss alone must keep it out. int8 loses next to nothing.
    compression = {
        "variants": ["distilled", "int8"],
        "hidden_units": [1],
        "distill_epochs": 1,
        "max_metric_loss": {"auc": 0.02, "accuracy": 0.02, "ece": 0.02},
        "min_size_gain": 0.1,
    }
    run, model, gate = _stage_inputs(env, trained, compression, tmp_path)
    with caplog.at_level("INFO", logger="aimass"):
        result = compress_candidate(run, model, gate)
    distilled, int8 = result.variants
    assert distilled["gzip_bytes"] < int8["gzip_bytes"] < result.candidate["gzip_bytes"]
    assert not distilled["clears"]
    assert any("max_metric_loss.auc" in reason for reason in distilled["reasons"])
    assert int8["clears"], int8["reasons"]
    assert result.chosen == "int8"
    assert (result.registry_version, result.candidate_version) == ("2", "1")
    assert "compress: distilled: size" in caplog.text and "misses: " in caplog.text
    assert "int8 clears every bar" in caplog.text
    # A retried task registers nothing new.
    assert compress_candidate(run, model, gate).registry_version == "2"
    mlc = tracking.client(env)
    assert len(mlc.search_model_versions(f"name='{DATASET}'")) == 2
    tags = mlc.get_model_version(DATASET, "2").tags
    assert tags[tracking.VARIANT_TAG] == "int8" and tags[tracking.COMPRESSED_FROM_TAG] == "1"
    # The record, the gate decision and MLflow (a child run per variant) say why.
    records = Path(run["report_dir"]) / "records"
    assert CompressionResult.read(records / "compression.json").chosen == "int8"
    decision = GateDecision.read(records / "gate.json")
    assert decision.compression is not None and decision.compression["chosen"] == "int8"
    parent = mlc.get_run(model["mlflow_run_id"])
    assert parent.data.tags["aimass.compression"] == "int8"
    children = mlc.search_runs(
        [parent.info.experiment_id],
        filter_string="tags.`aimass.kind` = 'compression_variant'",
    )
    assert {c.data.tags["aimass.variant"] for c in children} == {"distilled", "int8"}
    assert all(c.data.tags["mlflow.parentRunId"] == model["mlflow_run_id"] for c in children)

    deployment = deploy_model(run, model, result)
    assert deployment.registry_version == "2"
    champion = tracking.version_by_alias(env, DATASET, tracking.CHAMPION)
    assert str(champion.version) == "2"
    # Batch scoring resolves the alias and downloads version.source: the int8 variant.
    folder = tracking.download_version(env, champion, tmp_path / "champion")
    spec = load_spec(DATASET, env.conf_dir)
    holdout, _ = load_arrays(trained["partition"], spec, "holdout")
    assert np.allclose(predict(folder, holdout), predict(Path(result.saved_model_dir), holdout))
    answer = server.predict_rest(DATASET, [deployment.rest_instance], label="stable")
    assert 0.0 <= answer[0] <= 1.0
