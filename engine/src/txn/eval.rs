//! Evaluation of a transaction part against a private overlay over the shard's state.
