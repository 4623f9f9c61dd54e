//! systemd readiness (`Type=notify` units): `READY=1` once, after the lease is held and
//! subnet.env written. Without `NOTIFY_SOCKET` this does nothing.

pub fn ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    match sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        Ok(()) => log::debug!("sent READY=1 to systemd"),
        Err(e) => log::warn!("failed to notify systemd: {e}"),
    }
}
