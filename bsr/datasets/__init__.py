"""The data side: dataset readers and layouts (:mod:`.readers`), the embedded synthetic
generator (:mod:`.synthetic`), misalignments with ground truth (:mod:`.simulate`) and the
simulated test sets written from them (:mod:`.testsets`), training crops (:mod:`.crops`),
per-sample training misalignments (:mod:`.misalign`) and the benchmark's sets
(:mod:`.benchsets`)."""
