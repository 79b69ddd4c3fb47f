//! Router-level tests of the desk (no browser).
