"""The student and its training: a width-scaled copy of the teacher started from its most important channels
(:mod:`.design`), sized to a board (:mod:`.sizing`), distilled on synthetic inputs (:mod:`.distillation`),
optionally fine-tuned with tfmot (:mod:`.finetune`)."""
