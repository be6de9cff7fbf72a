//! Host initialisation against real SSH hosts (`support/hosts.rs`: sshd in namespaces of
//! their own over a Debian root): berth's SSH client (`ssh.rs`) and the facts it gathers
//! (`facts.rs`).

mod facts;
mod ssh;
