//! chassis-mock.
