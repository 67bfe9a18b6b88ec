"""Shared fixtures: a tiny CLINC-shaped dataset and a tiny recipe that trains in seconds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLINC = ROOT / "calibration_data" / "clinc150" / "data_full.json"

TINY_INTENTS = ("translate", "transfer", "timer", "weather", "alarm", "balance")


def tiny_clinc(per_intent_train: int = 40, per_intent_eval: int = 10, oos: int = 20, seed: int = 0) -> dict:
    """A CLINC-style JSON object with a few real intents and out-of-scope rows."""
    full = json.loads(CLINC.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    out = {}
    for split, n in (("train", per_intent_train), ("val", per_intent_eval), ("test", per_intent_eval)):
        rows = []
        for intent in TINY_INTENTS:
            pool = [r for r in full[split] if r[1] == intent]
            rows += rng.sample(pool, min(n, len(pool)))
        out[split] = rows
        out[f"oos_{split}"] = rng.sample(full[f"oos_{split}"], min(oos, len(full[f"oos_{split}"])))
    return out


@pytest.fixture(scope="session")
def tiny_clinc_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny_clinc.json"
    path.write_text(json.dumps(tiny_clinc()), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_recipe():
    from tflite_compress.config import (
        DistillConfig, PruneConfig, QATConfig, Recipe, StudentConfig, TeacherConfig, TokenizerConfig,
    )

    return Recipe(
        name="tiny",
        tokenizer=TokenizerConfig(vocabulary_size=400, sequence_length=16, min_frequency=2),
        teacher=TeacherConfig(kind="minilm", sequence_length=24, batch_size=64, head_epochs=30),
        student=StudentConfig(embedding_dim=16, filters=16, kernel_sizes=(1, 2), hidden_units=32, dropout=0.0),
        distill=DistillConfig(epochs=8, batch_size=32, learning_rate=5e-3),
        prune=PruneConfig(epochs=3, learning_rate=1e-3),
        qat=QATConfig(epochs=2, learning_rate=5e-4),
    )
