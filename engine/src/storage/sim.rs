//! Simulated disk (being written).
