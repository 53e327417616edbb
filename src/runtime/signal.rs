//! Process signals: SIGINT or SIGTERM ask the server to stop. Under madsim the
//! simulator's ctrl-c stands in for both.

pub use placement_client::shutdown_signal;

/// Tells the service manager how this process is doing, when it asked to be
/// told (systemd's `Type=notify` sets `NOTIFY_SOCKET`): `READY=1` once the
/// member serves, `STOPPING=1` when it begins to stop. Without the variable,
/// nothing happens; a failure to send is logged, never fatal.
#[cfg(not(madsim))]
pub fn notify_service_manager(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(e) = notify(&socket, state) {
        tracing::warn!(cause = %e, socket = ?socket, "cannot notify the service manager");
    }
}

/// No service manager runs simulated nodes.
#[cfg(madsim)]
pub fn notify_service_manager(_state: &str) {}

/// Sends `state` as one datagram to `socket`: a path, or an abstract socket
/// name written with a leading `@` (sd_notify's protocol).
#[cfg(not(madsim))]
fn notify(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let sender = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sender.send_to_addr(state.as_bytes(), &addr)?
    } else {
        sender.send_to(state.as_bytes(), std::path::Path::new(socket))?
    };
    if sent != state.len() {
        return Err(std::io::Error::other("the notification was cut short"));
    }
    Ok(())
}

#[cfg(all(test, not(madsim)))]
mod tests {
    #[test]
    fn the_service_manager_gets_each_state_as_one_datagram_on_a_path_or_an_abstract_socket() {
        use std::os::unix::net::UnixDatagram;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        super::notify(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("placement-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&addr).unwrap();
        super::notify(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
