//! Opening WebSocket connections on loopback only, from a chosen loopback source address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// The server address of a `ws://` (or `http://`) URL, which must be on loopback: this load
/// generator never sends traffic anywhere else.
pub fn loopback_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .with_context(|| format!("{url:?}: expected a ws:// or http:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (
            host,
            port.parse().with_context(|| format!("bad port in {url:?}"))?,
        ),
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse()
            .with_context(|| format!("{url:?}: the host must be a loopback IP or localhost"))?
    };
    check_loopback(ip)?;
    Ok(SocketAddr::new(ip, port))
}

/// Refuses any address outside 127.0.0.0/8 and ::1.
pub fn check_loopback(ip: IpAddr) -> anyhow::Result<()> {
    if !ip.is_loopback() {
        bail!("{ip} is not a loopback address; this load generator only talks to loopback");
    }
    Ok(())
}

/// Connects to `url` (a `ws://` URL on loopback) from `source` (port chosen by the kernel) and
/// completes the WebSocket handshake.
pub async fn connect(url: &str, source: Option<IpAddr>) -> anyhow::Result<Ws> {
    let addr = loopback_addr(url)?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        check_loopback(ip)?;
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("cannot bind to source address {ip}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let request = url.into_client_request()?;
    // Small buffers: one load generator holds thousands of mostly idle connections.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (ws, _response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .with_context(|| format!("WebSocket handshake with {url} failed"))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert_eq!(
            loopback_addr("ws://127.0.0.1:8080/ws").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            loopback_addr("http://localhost:9000").unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(
            loopback_addr("ws://[::1]:7/x").unwrap(),
            "[::1]:7".parse().unwrap()
        );
        assert!(loopback_addr("ws://127.0.0.3").is_ok());
        assert!(loopback_addr("ws://10.0.0.1:80/ws").is_err());
        assert!(loopback_addr("ws://example.org/ws").is_err());
        assert!(loopback_addr("wss://127.0.0.1/ws").is_err());
    }
}
