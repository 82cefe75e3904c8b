//! Real files (being written).
