"""The teacher and its metadata: loading a model safely (:mod:`.model`), the publisher's statistics file
(:mod:`.stats`), the layer graph both walk (:mod:`.graph`) and per-layer parameters and MACs
(:mod:`.profile`)."""
