//! Streams through the web's terminal socket and log endpoint: an interactive shell, a command run without a
//! TTY (`janus exec`), and container logs.
