//! The control plane's integration tests: the etcd backend against a real etcd.

mod etcd;
mod partitions;
