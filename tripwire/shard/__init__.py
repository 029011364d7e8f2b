"""One hot model across many partitions: per-partition window summaries, merged and judged once.

A model configured with ``sharded = true`` is keyed by ``request_id``, so its records spread over
every input partition (a prediction, its features and its label still meet on one). Each
partition's :class:`~tripwire.monitor.ModelMonitor` folds its share of an event-time window as
usual but, instead of judging it, emits a **summary** (:mod:`tripwire.shard.summary`): the
detectors' mergeable window state plus the partition's watermark. :class:`~tripwire.shard.merge.ShardMerger`
merges a window's summaries in partition order once every partition's watermark has passed its
end, and judges it with the same detectors and alert policy as an unsharded model.
"""
