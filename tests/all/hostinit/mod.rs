//! Host initialisation against real SSH hosts (`support/hosts.rs`: sshd in namespaces of
//! their own over a Debian root): berth's SSH client (`ssh.rs`).

mod ssh;
