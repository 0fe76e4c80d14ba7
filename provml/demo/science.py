"""The demo's science: seismic-like volumes, curation, learning data and a salt detector.

Small and realistic enough to recognise: 3-D amplitude volumes with dipping layered
reflectors, a high-amplitude salt body and acquisition noise; curation drops volumes with
too many dead traces and tiles the rest; preparation normalises tile features and splits
them; training fits a logistic-regression salt detector epoch by epoch. Nothing here
knows about provenance: the workflows in :mod:`provml.demo.workflows` add capture.

Imports: numpy and scikit-learn (the ``demo`` extra).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHAPE = (24, 24, 48)  # inlines, crosslines, time samples
TILE = (8, 8, 16)


@dataclass(frozen=True)
class Survey:
    name: str
    region: str
    acquired: int
    seed: int
    dead_trace_fraction: float = 0.01


SURVEYS = (
    Survey("SRV-2019-A", "Santos Basin, block S-1", 2019, seed=11),
    Survey("SRV-2020-B", "Santos Basin, block S-2", 2020, seed=12),
    Survey("SRV-2021-C", "Campos Basin, block C-7", 2021, seed=13, dead_trace_fraction=0.35),
    Survey("SRV-2023-D", "Santos Basin, block S-3", 2023, seed=14),
)
#: The survey acquired after model version 1 was trained: version 2 retrains with it.
LATE_SURVEY = Survey("SRV-2024-E", "Campos Basin, block C-9", 2024, seed=15)
#: The labelled survey held out for evaluation.
HOLDOUT_SURVEY = Survey("SRV-2025-F", "Santos Basin, block S-4", 2025, seed=16)
#: The new, unlabelled survey the deployed model is run on.
TARGET_SURVEY = Survey("SRV-2026-G", "Santos Basin, block S-5", 2026, seed=17)


def make_volume(survey: Survey) -> tuple[np.ndarray, np.ndarray]:
    """An amplitude volume and its salt mask: dipping reflectors, a salt dome, noise."""
    rng = np.random.default_rng(survey.seed)
    ni, nx, nt = SHAPE
    i, x, t = np.meshgrid(np.arange(ni), np.arange(nx), np.arange(nt), indexing="ij")
    dip = rng.uniform(-0.3, 0.3, size=2)
    depth = t + dip[0] * i + dip[1] * x
    reflectivity = sum(
        rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * depth / rng.uniform(5, 12) + rng.uniform(0, 6))
        for _ in range(3)
    )
    centre = rng.uniform(0.3, 0.7, size=2) * (ni, nx)
    radius = rng.uniform(5, 8)
    top = rng.uniform(14, 24)
    dome = ((i - centre[0]) ** 2 + (x - centre[1]) ** 2) < (radius + (t - top) * 0.2) ** 2
    salt = dome & (t > top)
    volume = np.where(salt, 2.5 + 0.2 * rng.standard_normal(SHAPE), reflectivity)
    volume += 0.3 * rng.standard_normal(SHAPE)
    dead = rng.random((ni, nx)) < survey.dead_trace_fraction
    volume[dead, :] = 0.0
    return volume.astype(np.float32), salt


def write_raw(survey: Survey, directory: Path) -> Path:
    """Write one acquired volume (``.npy``) with its acquisition metadata (``.json``)."""
    volume, salt = make_volume(survey)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{survey.name}.npy"
    np.save(path, volume)
    np.save(directory / f"{survey.name}.salt-mask.npy", salt)
    meta = {
        "survey": survey.name,
        "region": survey.region,
        "acquired": survey.acquired,
        "inlines": SHAPE[0],
        "crosslines": SHAPE[1],
        "samples": SHAPE[2],
        "sample_interval_ms": 4,
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def dead_trace_fraction(volume: np.ndarray) -> float:
    return float(np.mean(np.all(volume == 0.0, axis=2)))


def tile_features(volume: np.ndarray, salt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a volume into tiles; per tile: amplitude statistics and a salt label."""
    features, labels = [], []
    ti, tx, tt = TILE
    for a in range(0, SHAPE[0] - ti + 1, ti // 2):
        for b in range(0, SHAPE[1] - tx + 1, tx // 2):
            for c in range(0, SHAPE[2] - tt + 1, tt // 2):
                tile = volume[a : a + ti, b : b + tx, c : c + tt]
                spectrum = np.abs(np.fft.rfft(tile, axis=2)).mean(axis=(0, 1))
                features.append(
                    [
                        tile.mean(),
                        tile.std(),
                        np.sqrt((tile**2).mean()),
                        np.abs(np.diff(tile, axis=2)).mean(),
                        float(np.argmax(spectrum[1:]) + 1),
                        np.percentile(tile, 90),
                    ]
                )
                labels.append(salt[a : a + ti, b : b + tx, c : c + tt].mean() > 0.5)
    return np.asarray(features, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def curate(raw_paths: list[Path], out: Path, max_dead: float = 0.1) -> tuple[Path, list[str]]:
    """Quality filtering (dead traces) and tiling; returns the tiles file and kept surveys."""
    xs, ys, kept = [], [], []
    for path in raw_paths:
        volume = np.load(path)
        if dead_trace_fraction(volume) > max_dead:
            continue
        salt = np.load(path.with_name(path.stem + ".salt-mask.npy"))
        x, y = tile_features(volume, salt)
        xs.append(x)
        ys.append(y)
        kept.append(path.stem)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, x=np.concatenate(xs), y=np.concatenate(ys), surveys=np.asarray(kept))
    return out, kept


def prepare(tiles: Path, train_out: Path, val_out: Path, val_fraction: float, seed: int) -> dict:
    """Normalise features (statistics from the training part only) and split."""
    data = np.load(tiles)
    x, y = data["x"], data["y"]
    order = np.random.default_rng(seed).permutation(len(y))
    n_val = int(len(y) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-9
    np.savez(train_out, x=(x[train] - mean) / std, y=y[train], mean=mean, std=std)
    np.savez(val_out, x=(x[val] - mean) / std, y=y[val], mean=mean, std=std)
    return {"train_tiles": len(train), "val_tiles": int(n_val)}


def new_classifier(learning_rate: float, alpha: float, seed: int):
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(
        loss="log_loss",
        learning_rate="constant",
        eta0=learning_rate,
        alpha=alpha,
        random_state=seed,
    )


def train_epoch(model, train: Path, val: Path, seed: int) -> dict[str, float]:
    """One pass over the training tiles; returns training loss and validation accuracy."""
    from sklearn.metrics import accuracy_score, log_loss

    tr, va = np.load(train), np.load(val)
    order = np.random.default_rng(seed).permutation(len(tr["y"]))
    model.partial_fit(tr["x"][order], tr["y"][order], classes=np.array([0, 1]))
    return {
        "train_loss": float(log_loss(tr["y"], model.predict_proba(tr["x"]), labels=[0, 1])),
        "val_accuracy": float(accuracy_score(va["y"], model.predict(va["x"]))),
    }


def evaluate(model, raw: Path, scaling: Path) -> dict[str, float]:
    """Accuracy and F1 on tiles of a volume the model never saw."""
    from sklearn.metrics import accuracy_score, f1_score

    x, y = tile_features(np.load(raw), np.load(raw.with_name(raw.stem + ".salt-mask.npy")))
    s = np.load(scaling)
    predicted = model.predict((x - s["mean"]) / s["std"])
    return {
        "test_accuracy": float(accuracy_score(y, predicted)),
        "test_f1": float(f1_score(y, predicted, zero_division=0)),
    }


def predict(model, raw: Path, scaling: Path, out: Path) -> dict[str, float]:
    """Salt probability per tile of a new survey, written as ``.npy``."""
    volume = np.load(raw)
    x, _ = tile_features(volume, np.zeros(SHAPE, dtype=bool))
    s = np.load(scaling)
    probability = model.predict_proba((x - s["mean"]) / s["std"])[:, 1]
    np.save(out, probability)
    return {"tiles": len(probability), "salt_fraction": float((probability > 0.5).mean())}


def save_model(model, path: Path) -> Path:
    path.write_bytes(pickle.dumps(model))
    return path


def load_model(path: Path):
    return pickle.loads(path.read_bytes())  # the demo reads back only its own file
