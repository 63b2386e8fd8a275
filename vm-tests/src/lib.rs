//! Namespace labs for end-to-end tests.
