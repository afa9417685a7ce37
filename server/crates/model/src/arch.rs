//! What differs between the GLM architectures: configs and attention. Everything else is the
//! shared shell and stacks.

pub mod glm4moe;
pub mod glm4moelite;
