"""What the pipeline hands the teacher, rebuilt outside it (for Beam and for the training workers).

No Beam here: the tf.distribute workers import it too.
"""

from __future__ import annotations


def pipeline_teacher_inputs(dataset, recipe, vocab: list[str] | None = None):
    """(texts per split, train label ids, student ids per split or None) as `run_text_pipeline`
    passes them to `teacher_outputs`: train/val/test, plus the augmented train copies the recipe
    asks for; student ids only for a "keras" teacher (they need the learned vocabulary)."""
    from ..pipeline import teacher_texts
    from ..tokenizer import WordPieceTokenizer, learn_vocabulary

    texts = teacher_texts(dataset, recipe)
    labels = dataset.train.label_ids(list(dataset.label_names), "train split")
    ids = None
    if recipe.teacher.kind == "keras":
        tokenizer = WordPieceTokenizer(vocab or learn_vocabulary(dataset.train.texts, recipe.tokenizer), recipe.tokenizer)
        ids = {s: tokenizer.encode_batch(v) for s, v in texts.items()}
    return texts, labels, ids
