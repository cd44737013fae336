//! chassis-engine.
