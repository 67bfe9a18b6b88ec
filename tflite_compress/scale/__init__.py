"""Past one machine: teacher outputs on Apache Beam, student training on tf.distribute.

- `shards`: the sharded form of a teacher-cache entry (shard files + a manifest with each
  shard's size and sha256), read by `teacher.FeatureCache` like a single `.npz`. No Beam, no TF.
- `beam_teacher`: the teacher's pass as a Beam pipeline (needs the `[scale]` extra).
- `distribute`: tf.distribute strategies and distill -> prune -> QAT under one.

Nothing here is imported by the rest of the package unless asked for.
"""
