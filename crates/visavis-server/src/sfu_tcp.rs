//! ICE-TCP for the SFU (RFC 6544, passive side): a TCP listener on the SFU's port number whose
//! connections carry RFC 4571 frames (a 16-bit length, then one STUN, DTLS, RTP or RTCP
//! packet). Each connection is a task that reads frames and hands them to the SFU task, and
//! writes what the SFU sends back through a bounded queue. Limits: connections per source
//! address and in all, a first frame that must be an ICE check, and an idle timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::per_ip::PerIp;

/// Frames queued for one connection; more are dropped (as a congested UDP path would).
const OUTBOX_FRAMES: usize = 256;
/// Longest a write may take before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames read from all connections, waiting for the SFU task: readers wait when it is full.
pub const INBOX_FRAMES: usize = 1024;

/// What the connections tell the SFU task.
#[derive(Debug)]
pub enum TcpEvent {
    /// A connection spoke ICE: frames for `peer` go to `outbox`.
    Opened {
        peer: SocketAddr,
        outbox: mpsc::Sender<Vec<u8>>,
    },
    /// One frame from `peer`.
    Frame {
        peer: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        peer: SocketAddr,
    },
}

/// ICE-TCP's limits (`--sfu-tcp-per-ip`, `--sfu-tcp-max`; the idle timeout is the SFU's).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub per_ip: usize,
    pub total: usize,
    pub idle: Duration,
}

/// Accepts connections until `shutdown`; each runs until it closes, breaks a rule, or the
/// server stops.
pub async fn accept(
    listener: TcpListener,
    limits: TcpLimits,
    events: mpsc::Sender<TcpEvent>,
    shutdown: CancellationToken,
) {
    let per_ip = PerIp::new(limits.per_ip);
    let total = PerIp::new(limits.total);
    // Every connection counts under one key for the total.
    let all = std::net::IpAddr::from([0, 0, 0, 0]);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "SFU ICE-TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (Some(slot), Some(total_slot)) = (per_ip.acquire(peer.ip()), total.acquire(all)) else {
            tracing::debug!(%peer, "SFU ICE-TCP connection refused: too many");
            continue;
        };
        let (events, shutdown) = (events.clone(), shutdown.clone());
        tokio::spawn(async move {
            serve(stream, peer, limits.idle, &events, &shutdown).await;
            let _ = events.send(TcpEvent::Closed { peer }).await;
            drop((slot, total_slot));
        });
    }
}

/// One connection: frames in to the SFU task here, frames out from its outbox in a task of
/// their own (a read is never cut short by a write, which would lose half a frame).
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    idle: Duration,
    events: &mpsc::Sender<TcpEvent>,
    shutdown: &CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let (outbox, queued) = mpsc::channel::<Vec<u8>>(OUTBOX_FRAMES);
    let writing = tokio::spawn(write_frames(writer, queued));
    let mut outbox = Some(outbox);
    let mut buf = Vec::new();
    loop {
        let read = tokio::select! {
            () = shutdown.cancelled() => break,
            read = tokio::time::timeout(idle, read_frame(&mut reader, &mut buf)) => read,
        };
        // Idle past the timeout, closed, or a broken frame.
        let Ok(Ok(())) = read else { break };
        if let Some(outbox) = outbox.take() {
            // Only an ICE connectivity check opens the way to the SFU: anything else first is
            // not a browser, and is not kept.
            if visavis_sfu::stun_local_ufrag(&buf).is_none() {
                tracing::debug!(%peer, "SFU ICE-TCP connection closed: no ICE check first");
                break;
            }
            if events.send(TcpEvent::Opened { peer, outbox }).await.is_err() {
                break;
            }
        }
        let data = std::mem::take(&mut buf);
        if events.send(TcpEvent::Frame { peer, data }).await.is_err() {
            break;
        }
    }
    writing.abort();
}

/// Writes the SFU's packets to the connection, each as an RFC 4571 frame, until the outbox
/// closes or a write fails or stalls.
async fn write_frames(mut writer: tokio::net::tcp::OwnedWriteHalf, mut queued: mpsc::Receiver<Vec<u8>>) {
    let mut framed = Vec::new();
    while let Some(frame) = queued.recv().await {
        framed.clear();
        // The SFU sends nothing near 64 KiB (its packets fit a datagram).
        let Ok(len) = u16::try_from(frame.len()) else {
            continue;
        };
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&frame);
        match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// Reads one RFC 4571 frame into `buf`. A zero length is refused (nothing sends one).
async fn read_frame<R: AsyncReadExt + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let len = usize::from(reader.read_u16().await?);
    if len == 0 {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    buf.resize(len, 0);
    reader.read_exact(buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_by_their_length() {
        let bytes: &[u8] = &[0, 3, 1, 2, 3, 0, 1, 9, 0, 0];
        let mut reader = bytes;
        let mut buf = Vec::new();
        read_frame(&mut reader, &mut buf).await.unwrap();
        assert_eq!(buf, [1, 2, 3]);
        read_frame(&mut reader, &mut buf).await.unwrap();
        assert_eq!(buf, [9]);
        assert!(read_frame(&mut reader, &mut buf).await.is_err(), "zero length");
        let mut truncated: &[u8] = &[0, 5, 1];
        assert!(read_frame(&mut truncated, &mut buf).await.is_err());
    }
}
