//! glm-server library
