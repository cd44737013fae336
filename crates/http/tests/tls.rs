//! The builder's TLS: built without a process-wide provider, and offering by ALPN the protocol
//! the client speaks (read from the ClientHello a bare TCP listener receives).

use chassis_http::{HttpVersion, builder};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// The first bytes a client sends to `https://127.0.0.1:<port>/`: its TLS ClientHello.
async fn client_hello(version: HttpVersion) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/",
        listener.local_addr().unwrap().port()
    );
    let client = builder(version).no_proxy().build().unwrap();
    let request = tokio::spawn(async move { client.get(url).send().await });
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut hello = vec![0; 4096];
    let n = socket.read(&mut hello).await.unwrap();
    hello.truncate(n);
    drop(socket);
    // No server answers: the request fails.
    assert!(request.await.unwrap().is_err());
    hello
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A protocol name as ALPN writes it: length-prefixed.
const H2: &[u8] = b"\x02h2";
const HTTP1: &[u8] = b"\x08http/1.1";

#[tokio::test]
async fn auto_offers_http2_and_http1_by_alpn() {
    let hello = client_hello(HttpVersion::Auto).await;
    assert_eq!(hello[0], 0x16, "a TLS handshake record");
    assert!(contains(&hello, &[H2, HTTP1].concat()));
}

#[tokio::test]
async fn http1_offers_http1_only() {
    let hello = client_hello(HttpVersion::Http1).await;
    assert!(contains(&hello, HTTP1));
    assert!(!contains(&hello, H2));
}

#[tokio::test]
async fn http2_offers_http2_only() {
    let hello = client_hello(HttpVersion::Http2).await;
    assert!(contains(&hello, H2));
    assert!(!contains(&hello, HTTP1));
}

#[test]
fn clients_build_without_a_process_wide_tls_provider() {
    // reqwest without a provider panics here unless the client's TLS is configured.
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    for version in [HttpVersion::Auto, HttpVersion::Http1, HttpVersion::Http2] {
        builder(version).build().unwrap();
    }
    chassis_http::client().unwrap();
}
