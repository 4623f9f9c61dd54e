//! netops
