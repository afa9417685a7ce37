//! placeholder, replaced by the owning work
