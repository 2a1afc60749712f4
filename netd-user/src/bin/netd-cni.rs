//! `netd-cni`: netd's CNI plugin (install it as `netd` in the runtime's
//! CNI bin dir: `netd cni install`). It speaks CNI on stdin, stdout and
//! the environment, and talks to the running daemon over its socket.

fn main() {
    std::process::exit(netd_user::cni::main());
}
