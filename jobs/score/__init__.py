"""Batch scoring job: a SavedModel over lake rows on Spark (``aimass_batch_predict``)."""
