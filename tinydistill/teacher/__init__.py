"""The teacher and its metadata: loading a model safely (:mod:`.model`), the publisher's statistics file
(:mod:`.stats`), the layer graph both walk (:mod:`.graph`), per-layer parameters and MACs (:mod:`.profile`)
and what the tool sees before any work (:mod:`.inspection`)."""
