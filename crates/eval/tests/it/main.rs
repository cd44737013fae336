//! Tests of chassis-eval against real runs: agents loaded from files, the engine on an SQLite
//! journal in a temporary directory, and the mock model served on 127.0.0.1.

mod cassettes;
mod suites;
mod threads;
mod util;
mod version;
