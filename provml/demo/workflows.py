"""The demo's workflows, each run as its own process like real jobs on a cluster.

``python -m provml.demo.workflows STEP --data DIR`` runs one step under capture, using
only provml's public capture API. The store comes from ``PROVML_STORE``. Steps share
nothing but files: lineage connects them because the same bytes are the same entity.

Steps: ``curate`` (quality filtering and tiling of raw volumes), ``prepare``
(normalisation and train/validation split), ``train`` (a salt detector, per-epoch
metrics, a model version), ``evaluate`` and ``infer``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import provml
from provml.demo import science


def curate(data: Path, surveys: list[str], tag: str) -> None:
    provml.init(workflow="seismic-curation")
    raw = [data / "raw" / f"{name}.npy" for name in surveys]
    with provml.data_transformation("quality filter and tiling"):
        for path in raw:
            provml.used(path, path.stem, ml_class="DomainData")
            provml.used(
                path.with_suffix(".json"), f"{path.stem} acquisition", ml_class="DomainData"
            )
        provml.log_params(
            {"max_dead_trace_fraction": 0.1, "tile": "x".join(map(str, science.TILE))}
        )
        tiles, kept = science.curate(raw, data / f"tiles-{tag}.npz", max_dead=0.1)
        provml.generated(tiles, "tiles", ml_class="DomainData")
    print(f"  curation: kept {len(kept)} of {len(raw)} volumes ({', '.join(kept)})")


@provml.data_transformation(
    "normalise and split", params=["val_fraction", "seed"], capture_args=False
)
def prepare_learning_data(tiles: Path, train: Path, val: Path, val_fraction: float, seed: int):
    provml.used(tiles, "tiles", ml_class="DomainData")
    counts = science.prepare(tiles, train, val, val_fraction, seed)
    provml.generated(train, "training set", ml_class="FeatureSetData")
    provml.generated(val, "validation set", ml_class="FeatureSetData")
    return counts


def prepare(data: Path, tag: str) -> None:
    provml.init(workflow="learning-data-preparation")
    counts = prepare_learning_data(
        data / f"tiles-{tag}.npz", data / f"train-{tag}.npz", data / f"val-{tag}.npz", 0.25, 7
    )
    print(
        f"  preparation: {counts['train_tiles']} training and "
        f"{counts['val_tiles']} validation tiles"
    )


def train(data: Path, tag: str, version: int, epochs: int, learning_rate: float, base: int | None):
    provml.init(workflow="salt-detector-training")
    train_set, val_set = data / f"train-{tag}.npz", data / f"val-{tag}.npz"
    with provml.training("fit salt detector"):
        provml.used(train_set, "training set", ml_class="FeatureSetData")
        provml.used(val_set, "validation set", ml_class="FeatureSetData")
        provml.log_param("epochs", epochs)  # the estimator's own settings are captured from it
        derived_from = []
        if base is None:
            model = science.new_classifier(learning_rate, 1e-4, seed=version)
        else:  # fine-tune the previous version on the new data
            base_file = data / f"model-v{base}.pkl"
            provml.used(base_file, f"model v{base} weights", ml_class="DomainData")
            model = science.load_model(base_file)
            model.set_params(eta0=learning_rate)
            derived_from = [provml_model_iri(base)]
        for epoch in range(epochs):
            with provml.section("epoch", step=epoch):
                metrics = science.train_epoch(model, train_set, val_set, seed=epoch)
                for name, value in metrics.items():
                    provml.log_metric(name, value)
        model_file = science.save_model(model, data / f"model-v{version}.pkl")
        provml.generated(model_file, f"model v{version} weights", ml_class="DomainData")
        provml.log_model_version("salt-detector", version, model=model, derived_from=derived_from)
    print(f"  training: salt-detector v{version}, final {_fmt(metrics)}")


def provml_model_iri(version: int) -> str:
    from provml.ids import iri

    return iri("model", "salt-detector", "v", version)


def evaluate(data: Path, version: int, tag: str) -> None:
    provml.init(workflow="salt-detector-evaluation")
    target = data / "raw" / f"{science.HOLDOUT_SURVEY.name}.npy"
    model_file, scaling = data / f"model-v{version}.pkl", data / f"train-{tag}.npz"
    with provml.evaluation("held-out survey"):
        provml.used(model_file, f"model v{version} weights", ml_class="DomainData")
        provml.used(target, target.stem, ml_class="DomainData")
        provml.used(scaling, "training set", ml_class="FeatureSetData")
        scores = science.evaluate(science.load_model(model_file), target, scaling)
        for name, value in scores.items():
            provml.log_metric(name, value)
    print(f"  evaluation of v{version} on {target.stem}: {_fmt(scores)}")


def infer(data: Path, version: int, tag: str) -> None:
    provml.init(workflow="salt-detector-inference")
    target = data / "raw" / f"{science.TARGET_SURVEY.name}.npy"
    model_file, scaling = data / f"model-v{version}.pkl", data / f"train-{tag}.npz"
    out = data / f"salt-probability-{target.stem}.npy"
    with provml.inference("batch inference"):
        provml.used(model_file, f"model v{version} weights", ml_class="DomainData")
        provml.used(target, target.stem, ml_class="DomainData")
        provml.used(scaling, "training set", ml_class="FeatureSetData")
        summary = science.predict(science.load_model(model_file), target, scaling, out)
        provml.generated(out, "salt probability", ml_class="InferenceResult")
    print(f"  inference with v{version} on {target.stem}: {_fmt(summary)}")


def _fmt(values: dict) -> str:
    return ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m provml.demo.workflows")
    parser.add_argument("step", choices=["curate", "prepare", "train", "evaluate", "infer"])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tag", default="a")
    parser.add_argument("--surveys", default="")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--base", type=int)
    args = parser.parse_args(argv)
    if args.step == "curate":
        curate(args.data, args.surveys.split(","), args.tag)
    elif args.step == "prepare":
        prepare(args.data, args.tag)
    elif args.step == "train":
        train(args.data, args.tag, args.version, args.epochs, args.learning_rate, args.base)
    elif args.step == "evaluate":
        evaluate(args.data, args.version, args.tag)
    else:
        infer(args.data, args.version, args.tag)
    provml.flush()
    stats = provml.stats()
    if stats.spooled or stats.dropped_total:
        print(
            f"  capture: {stats.spooled} records spooled in {stats.spool_dir}, "
            f"dropped {dict(stats.dropped)}"
        )


if __name__ == "__main__":
    main()
