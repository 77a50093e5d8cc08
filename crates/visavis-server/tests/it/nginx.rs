//! docs/deploy.md's nginx block, run by Debian's nginx in front of the real binary started with
//! the guide's command: the page and WebSocket sessions over TLS through it, each client
//! counted under its own address (`--trusted-proxy`), and the `Host` line the guide insists on.
//! The blocks are read from the guide itself, so that what people copy is what is tested.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_tungstenite::tungstenite::Message;

use super::binary::Binary;
use super::outside::{free_ports, installed, join, next_of, read_all, refusal, tls, wss, Scratch};
use super::WAIT;

const GUIDE: &str = include_str!("../../../../docs/deploy.md");

/// The first code block in `lang` after `heading` in docs/deploy.md.
fn guide_block(heading: &str, lang: &str) -> String {
    let start = GUIDE
        .find(heading)
        .unwrap_or_else(|| panic!("docs/deploy.md has no heading {heading:?}"));
    let section = &GUIDE[start..];
    let fence = format!("\n```{lang}\n");
    let open = section
        .find(&fence)
        .unwrap_or_else(|| panic!("no {lang} block after {heading:?} in docs/deploy.md"))
        + fence.len();
    let close = section[open..].find("\n```").expect("the block is closed");
    section[open..open + close + 1].to_owned()
}

/// `text` with `from` replaced by `to`; `from` must be there (else the guide changed under the
/// test, which must follow).
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "docs/deploy.md's block no longer has {from:?}:\n{text}"
    );
    text.replace(from, to)
}

/// The arguments of the guide's `visavis` command behind a proxy, for a test: without
/// `--listen` (the test binary listens on an ephemeral port, which nginx is then pointed at),
/// with `origin` for the guide's public origin and STUN/TURN and the SFU on ephemeral loopback
/// ports.
fn guide_command(origin: &str) -> Vec<String> {
    let command = guide_block("## Behind a reverse proxy", "sh");
    let mut words = command.split_whitespace();
    assert_eq!(words.next(), Some("visavis"), "{command}");
    let mut args = Vec::new();
    while let Some(word) = words.next() {
        if word == "\\" {
            continue; // a continued line
        }
        if word == "--listen" {
            // Where the nginx block forwards to: `nginx_site` checks that it says so.
            assert_eq!(words.next(), Some("127.0.0.1:8080"), "{command}");
        } else {
            args.push(word.to_owned());
        }
    }
    let args = substitute(&args.join(" "), "https://consult.example.org", origin);
    let args = substitute(&args, "--turn-listen 0.0.0.0:3478", "--turn-listen 127.0.0.1:0");
    let args = substitute(&args, "--sfu-listen 0.0.0.0:3479", "--sfu-listen 127.0.0.1:0");
    args.split(' ').map(str::to_owned).collect()
}

/// The guide's nginx block for a test: listening on loopback ports `http` and `https`, with
/// the test's certificate in `dir`, forwarding to `upstream`.
fn nginx_site(dir: &Path, upstream: &str, http: u16, https: u16) -> String {
    let mut site = guide_block("### nginx", "nginx");
    let path = |name: &str| dir.join(name).to_str().expect("UTF-8 path").to_owned();
    for (from, to) in [
        ("listen 80;", format!("listen 127.0.0.1:{http};")),
        ("listen 443 ssl;", format!("listen 127.0.0.1:{https} ssl;")),
        (
            "/etc/letsencrypt/live/consult.example.org/fullchain.pem",
            path("cert.pem"),
        ),
        (
            "/etc/letsencrypt/live/consult.example.org/privkey.pem",
            path("key.pem"),
        ),
        (
            "proxy_pass http://127.0.0.1:8080;",
            format!("proxy_pass http://{upstream};"),
        ),
    ] {
        site = substitute(&site, from, &to);
    }
    site
}

/// A throwaway certificate for `localhost` and 127.0.0.1, written as `cert.pem` and `key.pem`
/// in `dir`; returns it for clients to trust.
fn write_certificate(dir: &Path) -> CertificateDer<'static> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("certificate");
    std::fs::write(dir.join("cert.pem"), made.cert.pem()).expect("cert");
    std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).expect("key");
    made.cert.der().clone()
}

/// nginx running `sites` (server blocks) in the foreground as one process, everything it
/// writes in `dir`; killed when dropped, so also when a test fails.
struct Nginx {
    child: Child,
    log: PathBuf,
}

impl Nginx {
    /// Starts it and waits until it accepts connections on `port`.
    async fn start(binary: &str, dir: &Path, sites: &str, port: u16) -> Self {
        let d = dir.to_str().expect("UTF-8 path");
        let conf = format!(
            "daemon off;\n\
             master_process off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             access_log off;\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             {sites}\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let log = dir.join("error.log");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Self { child, log };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = nginx.child.try_wait().expect("wait") {
                panic!("nginx exited ({status}):\n{}", nginx.log());
            }
            assert!(
                started.elapsed() < WAIT,
                "nginx does not listen:\n{}",
                nginx.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        nginx
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_guides_nginx_block_serves_the_page_and_sessions_per_client_address() {
    let Some(nginx) = installed("nginx", "nginx") else {
        return;
    };
    let scratch = Scratch::new("guide");
    let cert = write_certificate(&scratch.0);
    let [http, https] = free_ports();
    let origin = format!("https://localhost:{https}");
    // The guide's command, allowing one session per address: were clients seen as nginx's
    // address, the second would be refused.
    let mut args = guide_command(&origin);
    args.extend(["--max-sessions-per-ip", "1"].map(str::to_owned));
    let visavis = Binary::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let site = nginx_site(&scratch.0, &visavis.addr, http, https);
    let _nginx = Nginx::start(&nginx, &scratch.0, &site, https).await;

    // The page over TLS, with visavis's security headers and nginx's HSTS.
    let mut page = tls("localhost", https, [127, 0, 0, 2], &cert).await;
    let request = format!("GET /r/nginx HTTP/1.1\r\nHost: localhost:{https}\r\nConnection: close\r\n\r\n");
    page.write_all(request.as_bytes()).await.expect("write");
    let answer = read_all(page).await;
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{answer}");
    for header in [
        "content-security-policy: default-src 'self'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "permissions-policy: ",
        "strict-transport-security: max-age=",
    ] {
        assert!(head.contains(header), "no {header:?} in\n{head}");
    }
    assert!(answer.contains("<title>visavis</title>"), "{answer}");

    // Plain HTTP is sent to HTTPS.
    let mut plain = TcpStream::connect(("127.0.0.1", http)).await.expect("connect");
    let request = format!("GET /r/nginx HTTP/1.1\r\nHost: localhost:{http}\r\nConnection: close\r\n\r\n");
    plain.write_all(request.as_bytes()).await.expect("write");
    let answer = read_all(plain).await.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 301"), "{answer}");
    assert!(answer.contains("location: https://localhost/r/nginx"), "{answer}");

    // Two people from two addresses, over wss:// through nginx: both admitted, and a chat
    // message goes from one to the other.
    let mut alice = wss("localhost", https, [127, 0, 0, 2], &cert, &origin, None)
        .await
        .expect("Alice's WebSocket");
    let mut bob = wss("localhost", https, [127, 0, 0, 3], &cert, &origin, None)
        .await
        .expect("Bob's WebSocket: visavis sees his own address, not nginx's");
    let a = join(&mut alice, "nginx", "Alice").await;
    join(&mut bob, "nginx", "Bob").await;
    let chat = json!({"type": "chat", "text": "hello through nginx"});
    alice.send(Message::text(chat.to_string())).await.expect("send");
    let heard = next_of(&mut bob, "chat").await;
    assert_eq!(
        (heard["from"].as_u64(), heard["text"].as_str()),
        (Some(a), Some("hello through nginx"))
    );

    // A second session from Alice's address is over its limit, whatever address the client
    // claims for itself: nginx appends the real one, which is what visavis believes.
    let again = wss(
        "localhost",
        https,
        [127, 0, 0, 2],
        &cert,
        &origin,
        Some("203.0.113.9"),
    )
    .await;
    assert_eq!(refusal(again), (429, "too_many_sessions".to_owned()));
    // And the public origin holds through the proxy: another site's page is refused.
    let evil = wss(
        "localhost",
        https,
        [127, 0, 0, 4],
        &cert,
        "https://evil.example",
        None,
    )
    .await;
    assert_eq!(refusal(evil), (403, "origin_not_allowed".to_owned()));
}

/// Without `--public-origin` (pages opened by address), visavis checks the page's origin
/// against `Host`: the guide's `proxy_set_header Host $http_host` keeps it; nginx's default
/// (`127.0.0.1:<upstream port>`) and `$host` (no port) get every WebSocket refused.
#[tokio::test]
async fn without_the_guides_host_line_websockets_are_refused_by_origin() {
    let Some(nginx) = installed("nginx", "nginx") else {
        return;
    };
    let scratch = Scratch::new("host");
    let cert = write_certificate(&scratch.0);
    let visavis = Binary::start(&["--trusted-proxy", "127.0.0.1/32", "--no-turn"]).await;
    let ports: [u16; 6] = free_ports();
    let host_line = "        proxy_set_header Host $http_host;\n";
    let variants = [
        (host_line, true),
        ("", false),
        ("        proxy_set_header Host $host;\n", false),
    ];
    let sites: Vec<String> = variants
        .iter()
        .enumerate()
        .map(|(i, (line, _))| {
            let site = nginx_site(&scratch.0, &visavis.addr, ports[2 * i], ports[2 * i + 1]);
            substitute(&site, host_line, line)
        })
        .collect();
    let _nginx = Nginx::start(&nginx, &scratch.0, &sites.concat(), ports[1]).await;
    for (i, (line, works)) in variants.iter().enumerate() {
        let port = ports[2 * i + 1];
        let origin = format!("https://127.0.0.1:{port}");
        let opened = wss("127.0.0.1", port, [127, 0, 0, 2], &cert, &origin, None).await;
        if *works {
            join(
                &mut opened.expect("WebSocket through the guide's block"),
                "nginx",
                "Ann",
            )
            .await;
        } else {
            assert_eq!(
                refusal(opened),
                (403, "origin_not_allowed".to_owned()),
                "with {line:?}"
            );
        }
    }
}
