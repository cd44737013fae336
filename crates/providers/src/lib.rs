//! chassis-providers.
