//! The API over real HTTP: a server on 127.0.0.1 with an SQLite journal, agents in a temporary
//! directory, and the mock model.

mod api;
mod console;
mod document;
mod roles;
mod serving;
mod streams;
mod util;
