//! The HTTP client builder every chassis client starts from.
//!
//! reqwest is built without a TLS crypto provider (`rustls-no-provider`), so that ring stays
//! the only one in the tree; such a reqwest panics when a client is built without its TLS
//! configured, plain-HTTP clients included. [`builder`] configures it: rustls with ring and
//! Mozilla's roots (`webpki-roots`), nothing read from the process-wide rustls default, and the
//! protocol offered by ALPN matching the protocol the client speaks.

use std::sync::{Arc, LazyLock};

pub use chassis_core::spec::HttpVersion;
use reqwest::ClientBuilder;
use rustls::ClientConfig;

/// rustls with ring and Mozilla's roots, without ALPN; made once, cloned per client.
static TLS: LazyLock<Result<ClientConfig, String>> = LazyLock::new(|| {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot configure TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
});

/// A client builder speaking `version`, with its TLS configured (see the crate's docs).
///
/// `Auto` offers HTTP/2 and HTTP/1.1 to HTTPS servers and speaks HTTP/1.1 over plain HTTP;
/// `Http1` offers and speaks HTTP/1.1 only; `Http2` speaks HTTP/2 from the first byte (h2c
/// over plain HTTP). Redirects, timeouts and retries are the caller's to set.
///
/// A TLS configuration that cannot be made (ring supports TLS 1.2 and 1.3, so it never
/// happens) surfaces as an error of `build`, never as a panic.
pub fn builder(version: HttpVersion) -> ClientBuilder {
    let builder = reqwest::Client::builder();
    let mut tls = match &*TLS {
        Ok(tls) => tls.clone(),
        // An argument reqwest does not know: `build` then fails with "unknown TLS backend".
        Err(_) => return builder.tls_backend_preconfigured(()),
    };
    // reqwest sets no ALPN on a configuration it is given.
    tls.alpn_protocols = match version {
        HttpVersion::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
        HttpVersion::Http2 => vec![b"h2".to_vec()],
    };
    let builder = builder.tls_backend_preconfigured(tls);
    match version {
        HttpVersion::Auto => builder,
        HttpVersion::Http1 => builder.http1_only(),
        HttpVersion::Http2 => builder.http2_prior_knowledge(),
    }
}

/// A client with [`builder`]`(Auto)` and reqwest's other defaults, for tests and tools that
/// need nothing else set.
pub fn client() -> reqwest::Result<reqwest::Client> {
    builder(HttpVersion::Auto).build()
}
