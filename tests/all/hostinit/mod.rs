//! Host initialisation against real SSH hosts (`support/hosts.rs`: sshd in namespaces of
//! their own over a Debian root): berth's SSH client (`ssh.rs`), the facts it gathers
//! (`facts.rs`) and actions applied or checked (`apply.rs`).

mod apply;
mod facts;
mod ssh;
