//! chassis-store.
