"""The student and its training: a width-scaled copy of the teacher started from its most important channels
(:mod:`.design`), distillation on synthetic inputs (:mod:`.distillation`), optional tfmot fine-tuning
(:mod:`.finetune`)."""
