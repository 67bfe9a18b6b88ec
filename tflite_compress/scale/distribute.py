"""Student training on tf.distribute: distill -> prune -> QAT under one strategy.

    with strategy_scope("multiworker"):      # or make_strategy(...) once, first thing
        ...
    qat_model = train_student(build, recipe, x, targets, strategy="multiworker")

Strategies: "none" (the default strategy), "mirrored" (`MirroredStrategy`: the local devices;
one on a CPU-only box unless logical CPUs are configured) and "multiworker"
(`MultiWorkerMirroredStrategy`, one process per worker, the cluster in `TF_CONFIG`). Create the
strategy before any other TensorFlow op in the process (TF requires it for multiworker: the
collective ops are configured when the runtime starts); `make_strategy` keeps one per process.

Every worker runs the same program on the same data (same seeds): Keras shards each global batch
across the replicas and all-reduces the gradients, so `batch_size` stays the global batch and
the run takes the single-worker number of steps. The training functions are the single-process
ones (`distill.compile_for_distillation`/`fit`, `prune.prune`/`callbacks`/`strip`,
`qat.quantize_student`); only model creation and compile move inside the strategy's scope.

What tfmot does under a strategy (measured in tests/test_scale_distribute.py, docs/scale.md):
pruning masks follow the all-reduced (mirrored) weights, so every replica prunes the same
weights; QAT's moving-average quantizer ranges are updated per replica from each replica's own
part of the batch, and `assign_moving_average` averages those updates across replicas (MEAN of
the per-replica batch min/max), so the ranges stay equal on every worker but are the mean of
per-replica extremes, not the extremes of the global batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import InputError, RunError

STRATEGIES = ("none", "mirrored", "multiworker")
DEFAULT_TIMEOUT_SECONDS = 120

_strategy = None
_strategy_name: str | None = None


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    """`strategy`: one of STRATEGIES; `timeout_seconds`: how long a multiworker run waits for
    its peers to register before failing (instead of TF's default of waiting for ever)."""

    strategy: str = "none"
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise InputError(f"strategy {self.strategy!r} is not one of: {', '.join(STRATEGIES)}")
        if not isinstance(self.timeout_seconds, int) or self.timeout_seconds < 1:
            raise InputError(f"distribute.timeout_seconds: expected a positive integer, got {self.timeout_seconds!r}")


def tf_config() -> dict:
    """`TF_CONFIG`, checked: a cluster with a "worker" (and optional "chief") list and this task."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise InputError("--strategy multiworker needs TF_CONFIG (cluster and task, see docs/scale.md); it is not set")
    try:
        conf = json.loads(raw)
        cluster, task = conf["cluster"], conf["task"]
        workers = list(cluster.get("chief", [])) + list(cluster["worker"])
        index, kind = int(task["index"]), str(task["type"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"TF_CONFIG: expected {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, "
                         f"\"task\": {{\"type\": \"worker\", \"index\": N}}}}, got {raw[:120]!r} ({exc})") from None
    if kind not in cluster or not 0 <= index < len(cluster[kind]):
        raise InputError(f"TF_CONFIG: task {kind}:{index} is not in the cluster {cluster}")
    bad = [w for w in workers if not isinstance(w, str) or ":" not in w]
    if bad:
        raise InputError(f"TF_CONFIG: worker address {bad[0]!r} is not host:port")
    return conf


def make_strategy(name: str = "none", timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS):
    """The process's strategy, created on first call (call it before any other TF op)."""
    global _strategy, _strategy_name
    DistributeConfig(name, timeout_seconds)
    if _strategy is not None:
        if name != _strategy_name:
            raise InputError(f"strategy {name!r}: this process already runs under {_strategy_name!r}")
        return _strategy
    from .._tf import tf

    if name == "none":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        conf = tf_config()
        workers = list(conf["cluster"].get("chief", [])) + list(conf["cluster"]["worker"])
        message = f"multiworker: the cluster {', '.join(workers)} did not come up within {timeout_seconds} s"
        # TF waits for unreachable peers inside its runtime, holding the GIL, where neither an
        # exception nor a Python watchdog can reach: wait for every peer's port first, with a deadline.
        wait_for_peers(conf, timeout_seconds, message)
        _configure_coordination(tf, conf, timeout_seconds)
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(
                communication_options=tf.distribute.experimental.CommunicationOptions(
                    implementation=tf.distribute.experimental.CommunicationImplementation.RING))
            _barrier(tf, strategy)
        except (tf.errors.OpError, RuntimeError) as exc:
            raise RunError(f"{message} ({_first_line(exc)})") from None
    _strategy, _strategy_name = strategy, name
    return strategy


def wait_for_peers(conf: dict, timeout_seconds: float, message: str) -> None:
    """Listen on this task's port and connect to every peer's, until all answer or the deadline.

    A peer answers either here (its own wait) or from its TensorFlow server, which binds the same
    port once its wait is over; this task's listener closes before TensorFlow binds it.
    """
    cluster, task = conf["cluster"], conf["task"]
    me = cluster[task["type"]][int(task["index"])]
    peers = [a for j in ("chief", "worker") for a in cluster.get(j, []) if a != me]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(me.rsplit(":", 1)[1])))
        listener.listen(16)
    except OSError as exc:
        listener.close()
        raise RunError(f"multiworker: cannot listen on {me} ({exc})") from None
    deadline = time.monotonic() + timeout_seconds
    try:
        pending = list(peers)
        while pending:
            host, port = pending[0].rsplit(":", 1)
            try:
                socket.create_connection((host, int(port)), timeout=1.0).close()
                pending.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    raise RunError(f"{message} ({pending[0]} unreachable)") from None
                time.sleep(0.2)
        time.sleep(1.0)  # let the peers' own waits see this listener before it closes
    finally:
        listener.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _configure_coordination(tf, conf: dict, timeout_seconds: int) -> None:
    """TF's coordination service as MultiWorkerMirroredStrategy configures it, plus a deadline for
    the peers to register (TF's default waits for ever for an unreachable worker)."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    cluster = conf["cluster"]
    jobs = [coordination_config_pb2.CoordinatedJob(name=j, num_tasks=len(cluster[j]))
            for j in ("chief", "worker") if j in cluster]
    leader = f"/job:{'chief' if 'chief' in cluster else 'worker'}/replica:0/task:0"
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=leader, coordinated_jobs=jobs,
        cluster_register_timeout_in_ms=timeout_seconds * 1000,
        heartbeat_timeout_in_ms=max(timeout_seconds, 60) * 1000)


def _barrier(tf, strategy) -> None:
    """One all-reduce: returns when every worker is up (the register deadline bounds the wait)."""
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


@contextlib.contextmanager
def strategy_scope(name: str = "none", timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS) -> Iterator:
    """`with strategy_scope("multiworker") as strategy:` builds and compiles models under it."""
    strategy = make_strategy(name, timeout_seconds)
    with strategy.scope():
        yield strategy


def is_chief() -> bool:
    """True in a single process and on the chief (or worker 0) of a multiworker cluster: the one
    that writes outputs."""
    if _strategy_name != "multiworker":
        return True
    task = tf_config()["task"]
    return task["type"] == "chief" or (task["type"] == "worker" and int(task["index"]) == 0
                                       and "chief" not in tf_config()["cluster"])


def num_replicas() -> int:
    return int(_strategy.num_replicas_in_sync) if _strategy is not None else 1


def train_student(build: Callable, recipe, x_train: np.ndarray, targets: np.ndarray, strategy: str = "none",
                  log: Callable[[str], None] = print, verbose: int = 0, alpha: float | None = None) -> dict:
    """Distill, prune and QAT a student under `strategy` with the pipeline's own functions.

    `build()` returns a fresh tf-keras student (called inside the strategy's scope); `targets` are
    packed (`distill.pack_targets`). Returns {"float", "pruned", "qat"} models ("pruned" is the
    stripped model; stages the recipe switches off are skipped) and "sparsity".
    """
    from .. import distill, prune, qat

    alpha = recipe.distill.alpha if alpha is None else alpha
    batch = recipe.distill.batch_size
    out: dict = {}
    with strategy_scope(strategy) as s:
        log(f"distribute: {strategy}, {s.num_replicas_in_sync} replica(s), global batch {batch}")
        student = build()
        distill.compile_for_distillation(student, recipe.distill, alpha=alpha)
    distill.fit(student, x_train, targets, recipe.distill.epochs, batch, verbose=verbose, seed=recipe.seed)
    out["float"] = model = student
    if recipe.stages.prune and recipe.prune.target_sparsity > 0:
        steps = distill.batches_per_epoch(x_train, batch) * recipe.prune.epochs
        with strategy_scope(strategy):
            pruned = prune.prune(model, recipe.prune, steps)
            distill.compile_for_distillation(pruned, recipe.distill, learning_rate=recipe.prune.learning_rate,
                                             alpha=alpha)
        distill.fit(pruned, x_train, targets, recipe.prune.epochs, batch, callbacks=prune.callbacks(),
                    verbose=verbose, seed=recipe.seed + 1)
        with strategy_scope(strategy):
            out["pruned"] = model = prune.strip(pruned)
        out["sparsity"] = prune.overall_sparsity(model)
    if recipe.stages.qat:
        preserve = recipe.qat.preserve_sparsity and "pruned" in out
        with strategy_scope(strategy):
            q = qat.quantize_student(model, preserve_sparsity=preserve)
            distill.compile_for_distillation(q, recipe.distill, learning_rate=recipe.qat.learning_rate, alpha=alpha)
        distill.fit(q, x_train, targets, recipe.qat.epochs, batch, verbose=verbose, seed=recipe.seed + 2)
        out["qat"] = q
    return out


def quantizer_ranges(model) -> dict[str, list[float]]:
    """The QAT model's activation/output quantizer ranges ({variable name: [min, max]}), read on
    this worker: compare them across workers to see whether they stayed in sync."""
    out: dict[str, list[float]] = {}
    for v in model.non_trainable_weights:
        name = v.name
        if name.endswith(("_min:0", "_max:0")):
            stem = name[: -len("_min:0")]
            pair = out.setdefault(stem, [0.0, 0.0])
            pair[0 if name.endswith("_min:0") else 1] = float(np.asarray(v.numpy()).ravel()[0])
    return out


def run_training(dataset, recipe, cache_dir, strategy: str = "none", out_dir=None,
                 timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS, log: Callable[[str], None] = print,
                 verbose: int = 0) -> dict:
    """The pipeline's training stages on a strategy, end to end on this worker.

    tokenizer -> teacher outputs (the cache, as `teacher-outputs` on Beam writes it) -> distill ->
    prune -> QAT (`train_student`) -> full-INT8 conversion -> test metrics in the LiteRT
    interpreter. Every worker converts and scores its own copy (they must agree); only the chief
    writes `out_dir` (model_int8.tflite, vocab.txt, labels.txt, report.json). Returns the report.
    """
    make_strategy(strategy, timeout_seconds)  # first: before any other TF op
    from .. import convert, distill
    from ..files import atomic_write_json, atomic_write_text, staged_dir
    from ..runtime import TFLiteModel, classification_metrics
    from ..students import build_student
    from ..teacher import teacher_outputs
    from ..tokenizer import WordPieceTokenizer, learn_vocabulary
    from .inputs import pipeline_teacher_inputs

    label_names = list(dataset.label_names)
    vocab = learn_vocabulary(dataset.train.texts, recipe.tokenizer)
    tok = WordPieceTokenizer(vocab, recipe.tokenizer)
    texts, y_train, _ = pipeline_teacher_inputs(dataset, recipe, vocab)
    x = {s: tok.encode_batch(v) for s, v in texts.items()}
    y_test = dataset.test.label_ids(label_names, "test split")
    x_train, y_fit, teacher = x["train"], y_train, None
    if recipe.stages.distill:
        outs = teacher_outputs(recipe.teacher, texts, y_train, len(label_names), cache_dir, student_ids=x, log=log)
        teacher = outs.logits["train"]
        if "augmented" in outs.logits:
            x_train = np.concatenate([x["train"], x["augmented"]])
            y_fit = np.concatenate([y_train, np.tile(y_train, recipe.distill.augment_copies)])
            teacher = np.concatenate([teacher, outs.logits["augmented"]])
    targets = distill.pack_targets(y_fit, teacher, len(label_names))
    alpha = recipe.distill.alpha if teacher is not None else 1.0

    def build():
        return build_student(recipe.student, len(vocab), recipe.tokenizer.sequence_length, len(label_names),
                             seed=recipe.seed)

    models = train_student(build, recipe, x_train, targets, strategy, log=log, verbose=verbose, alpha=alpha)
    final = models.get("qat", models.get("pruned", models["float"]))
    cal = x["train"][: recipe.convert.calibration_samples]
    content = convert.to_int8(final, cal, recipe.convert)
    pred = TFLiteModel(content).predict(x["test"]).argmax(axis=1)
    metrics = classification_metrics(y_test, pred, label_names, dataset.oos_label)
    metrics.pop("most_confused", None)
    float_pred = np.asarray(models["float"].predict(x["test"], verbose=0)).argmax(axis=1)
    report = {"strategy": strategy, "replicas": num_replicas(), "chief": is_chief(),
              "float_test_accuracy": float(np.mean(float_pred == y_test)),
              "sparsity": models.get("sparsity"), "int8": {"test": metrics, "size_bytes": len(content)},
              "quantizer_ranges": quantizer_ranges(models["qat"]) if "qat" in models else {}}
    if out_dir is not None and is_chief():
        with staged_dir(out_dir) as tmp:
            (tmp / "model_int8.tflite").write_bytes(content)
            tok.save(tmp / "vocab.txt")
            atomic_write_text(tmp / "labels.txt", "\n".join(label_names) + "\n")
            atomic_write_json(tmp / "recipe.json", recipe.to_dict())
            atomic_write_json(tmp / "report.json", report)
    return report
