"""The Apache Beam preprocessing job: raw unpaired image folders -> validated, deduplicated, sharded TFRecords."""
