"""The inference engine: split a network at its generated parameters, cache the frozen prefix, evaluate many
parameter vectors in batches. Used by collection, training checks, evaluation and export."""
