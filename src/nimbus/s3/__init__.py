"""S3-compatible buckets: objects as plain files under the data dir, written atomically,
their metadata in the store (``Buckets`` in ``buckets.py`` is the way in)."""
