//! chassis-tools.
