//! (filled by the autoscaling / upgrade work)
