//! systemd's readiness protocol (`Type=notify`): one datagram such as `READY=1` to the unix
//! socket named by `$NOTIFY_SOCKET`. No systemd library is needed, and without the variable
//! nothing is sent.
//!
//! The hard parts: a name starting with `@` is in the abstract namespace (no file), and
//! `READY=1` must mean the mount answers, so the caller sends it only once the kernel mount is
//! in place and its INIT has been answered (`Mounted::wait_ready`).

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether `STOPPING=1` went out already (the signal and the end of the session both say it).
static STOPPING_SENT: AtomicBool = AtomicBool::new(false);

/// Send `state` (newline-separated `KEY=VALUE` lines) to systemd, if it listens. Returns
/// whether it was sent; failures are logged once at debug level and otherwise ignored, as a
/// missing listener must not stop the mount.
pub fn notify(state: &str) -> bool {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
        return false;
    };
    match send(&socket, state) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("cannot notify systemd at {socket:?}: {e}");
            false
        }
    }
}

/// Tell systemd the service is stopping (once).
pub fn stopping() {
    if !STOPPING_SENT.swap(true, Ordering::SeqCst) {
        notify("STOPPING=1");
    }
}

fn send(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let name = socket.as_bytes();
    let sock = UnixDatagram::unbound()?;
    let sent = if let Some(abstract_name) = name.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(socket))?
    };
    if sent != state.len() {
        return Err(std::io::Error::other("the notification was cut short"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1\nSTATUS=mounted").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=mounted");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("bwmediafs-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
