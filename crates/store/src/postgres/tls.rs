//! TLS to PostgreSQL with rustls (ring, Mozilla's roots): libpq's `sslmode`s, `sslrootcert`,
//! and client certificates (`sslcert`, `sslkey`).
//!
//! tokio-postgres negotiates TLS (the `SSLRequest` exchange) and hands the socket to a
//! [`MakeTlsConnect`]; this module is that glue, about what `tokio-postgres-rustls` would add
//! without its X.509 parser and second SHA-2 crate. tokio-postgres itself knows only
//! `disable`, `prefer` and `require`; the verification levels of `verify-ca` and `verify-full`
//! are the certificate verifier chosen here, and all five are sent to it as `prefer` or
//! `require`.
//!
//! The settings come from the URL (`?sslmode=…&sslrootcert=…`) or, where the URL is silent,
//! from `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY`, as libpq reads them. Unlike
//! libpq, nothing is read from `~/.postgresql/`: without `sslrootcert`, `verify-ca` and
//! `verify-full` trust the Mozilla roots built into chassis (what libpq calls
//! `sslrootcert=system`).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// The URL parameters (and their `PG*` variables) this module reads; they are taken out of the
/// URL before tokio-postgres parses the rest.
pub(crate) const PARAMS: [(&str, &str); 4] = [
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
];

/// libpq's `sslmode`, without `allow` (plain first, TLS if refused), which protects nothing
/// `prefer` does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, the certificate unchecked; plain otherwise. The default.
    Prefer,
    /// TLS or nothing, the certificate unchecked (checked against `sslrootcert` when it is
    /// given, as libpq does).
    Require,
    /// TLS, the certificate chain checked against the roots, not the host name.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl Mode {
    fn parse(text: &str) -> Result<Mode, String> {
        Ok(match text {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            "allow" => {
                return Err("sslmode `allow` is not supported (use prefer, or disable)".to_string());
            }
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether TLS may be skipped when the server refuses it.
    pub(crate) fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode;
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// Where trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Roots {
    /// The Mozilla roots built into chassis.
    Builtin,
    /// `sslrootcert=system`, libpq's name for the same.
    System,
    /// A PEM file of CA certificates.
    File(PathBuf),
}

/// The TLS settings of one target, as written (files not read yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    roots: Roots,
    client: Option<(PathBuf, PathBuf)>,
}

impl Settings {
    /// The settings from the URL's parameters (`given`, by name) and, for those it lacks, the
    /// environment (`env`); libpq's rules for combining them.
    pub(crate) fn new(
        given: &[(String, String)],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, String> {
        let value = |name: &str| -> Option<(String, String)> {
            let var = PARAMS.iter().find(|(p, _)| *p == name).map(|(_, v)| *v)?;
            given
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| (v.clone(), name.to_string()))
                .or_else(|| {
                    env(var)
                        .filter(|v| !v.is_empty())
                        .map(|v| (v, var.to_string()))
                })
        };
        let explicit_mode = value("sslmode")
            .map(|(text, source)| Mode::parse(&text).map_err(|m| format!("{source}: {m}")))
            .transpose()?;
        let roots = match value("sslrootcert") {
            None => None,
            Some((text, _)) if text == "system" => Some(Roots::System),
            Some((text, _)) => Some(Roots::File(PathBuf::from(text))),
        };
        let mode = match (explicit_mode, &roots) {
            // As libpq 16: the system's roots mean little without the host name checked.
            (None, Some(Roots::System)) => Mode::VerifyFull,
            (Some(mode), Some(Roots::System)) if mode != Mode::VerifyFull => {
                return Err(format!(
                    "sslmode `{}` may not be used with sslrootcert=system (use verify-full)",
                    mode.name()
                ));
            }
            // As libpq: `require` with a root certificate file checks the chain.
            (Some(Mode::Require), Some(Roots::File(_))) => Mode::VerifyCa,
            (mode, _) => mode.unwrap_or(Mode::Prefer),
        };
        let client = match (value("sslcert"), value("sslkey")) {
            (None, None) => None,
            (Some((cert, _)), Some((key, _))) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (Some((_, from)), None) => {
                return Err(format!("{from} is given without sslkey (PGSSLKEY)"));
            }
            (None, Some((_, from))) => {
                return Err(format!("{from} is given without sslcert (PGSSLCERT)"));
            }
        };
        Ok(Settings {
            mode,
            roots: roots.unwrap_or(Roots::Builtin),
            client,
        })
    }

    /// Reads the certificate and key files and builds the connector.
    pub(crate) fn connector(&self) -> Result<MakeRustls, String> {
        let context = Arc::new(Described {
            mode: self.mode,
            roots: match &self.roots {
                Roots::File(path) => format!("the CA in sslrootcert={}", path.display()),
                Roots::Builtin => "the built-in Mozilla roots (no sslrootcert given)".to_string(),
                Roots::System => "the built-in Mozilla roots (sslrootcert=system)".to_string(),
            },
            client_cert: self.client.as_ref().map(|(cert, _)| cert.clone()),
        });
        if self.mode == Mode::Disable {
            return Ok(MakeRustls {
                config: None,
                context,
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            Mode::Disable | Mode::Prefer | Mode::Require => Arc::new(Unchecked {
                provider: provider.clone(),
            }),
            Mode::VerifyCa | Mode::VerifyFull => {
                let roots = Arc::new(self.root_store()?);
                if self.mode == Mode::VerifyCa {
                    Arc::new(ChainOnly {
                        roots,
                        provider: provider.clone(),
                    })
                } else {
                    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                        .build()
                        .map_err(|e| format!("cannot use the root certificates: {e}"))?
                }
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot configure TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert, "sslcert")?;
                let key = private_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("sslcert and sslkey cannot be used together: {e}"))?
            }
        };
        Ok(MakeRustls {
            config: Some(Arc::new(config)),
            context,
        })
    }

    fn root_store(&self) -> Result<RootCertStore, String> {
        match &self.roots {
            Roots::Builtin | Roots::System => Ok(RootCertStore::from_iter(
                webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
            )),
            Roots::File(path) => {
                let mut store = RootCertStore::empty();
                for cert in certificates(path, "sslrootcert")? {
                    store.add(cert).map_err(|e| {
                        format!(
                            "sslrootcert {}: not a usable CA certificate: {e}",
                            path.display()
                        )
                    })?;
                }
                Ok(store)
            }
        }
    }
}

/// The certificates of a PEM file (at least one); `key` names the setting in errors.
fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let at = || format!("{key} {}", path.display());
    let pem = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", at()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM file of certificates: {e}", at()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no PEM certificate", at()));
    }
    Ok(certs)
}

/// The private key of a PEM file that only its owner can read (as libpq requires).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let at = || format!("sslkey {}", path.display());
    let metadata = std::fs::metadata(path).map_err(|e| format!("{}: cannot read: {e}", at()))?;
    check_key_mode(&metadata).map_err(|m| format!("{}: {m}", at()))?;
    let pem = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", at()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        format!(
            "{}: holds no unencrypted private key (PEM: PKCS#8, PKCS#1 or SEC1)",
            at()
        )
    })
}

/// A key others can read is refused: owned by root, group read is allowed (u=rw,g=r), as
/// libpq allows it for keys a system manages.
#[cfg(unix)]
fn check_key_mode(metadata: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let mode = metadata.mode() & 0o777;
    let (forbidden, allowed) = if metadata.uid() == 0 {
        (0o037, "u=rw,g=r (0640)")
    } else {
        (0o077, "u=rw (0600)")
    };
    if mode & forbidden != 0 {
        return Err(format!(
            "has permissions {mode:04o}; a private key must be {allowed} or less"
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_mode(_metadata: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

/// What a handshake error message needs to say which setting to check.
#[derive(Debug)]
pub(crate) struct Described {
    mode: Mode,
    roots: String,
    client_cert: Option<PathBuf>,
}

/// Makes a TLS connector per host; cheap to clone.
#[derive(Clone)]
pub(crate) struct MakeRustls {
    /// `None` for `sslmode=disable`, where tokio-postgres never asks for TLS.
    config: Option<Arc<ClientConfig>>,
    context: Arc<Described>,
}

impl fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeRustls")
            .field("mode", &self.context.mode)
            .finish()
    }
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = HandshakeError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, HandshakeError> {
        // An unusable name (a Unix socket directory) fails only if TLS is really attempted.
        let name = ServerName::try_from(domain.to_string()).ok();
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
            domain: domain.to_string(),
            context: self.context.clone(),
        })
    }
}

/// A TLS connector for one host.
pub(crate) struct RustlsConnect {
    config: Option<Arc<ClientConfig>>,
    name: Option<ServerName<'static>>,
    domain: String,
    context: Arc<Described>,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, HandshakeError>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let Some(config) = self.config else {
                return Err(HandshakeError(
                    "TLS is disabled (sslmode=disable)".to_string(),
                ));
            };
            let Some(name) = self.name else {
                return Err(HandshakeError(format!(
                    "`{}` is not a host name TLS can check",
                    self.domain
                )));
            };
            tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map(|stream| RustlsStream(Box::new(stream)))
                .map_err(|e| HandshakeError(describe_handshake(&e, &self.domain, &self.context)))
        })
    }
}

/// A failed handshake, already in words (it carries no source, so that the words are what a
/// caller walking the error's sources ends with).
#[derive(Debug)]
pub(crate) struct HandshakeError(String);

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandshakeError {}

fn describe_handshake(e: &io::Error, host: &str, context: &Described) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => describe_tls(tls, host, Some(context)),
        None => crate::postgres::target::describe_io(e),
    }
}

/// A rustls error as one line that says which setting to check; `context` is known during the
/// handshake, not when the server refuses the session afterwards (a client certificate is
/// checked after the client's side of a TLS 1.3 handshake is done).
pub(crate) fn describe_tls(e: &rustls::Error, host: &str, context: Option<&Described>) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(CertificateError::UnknownIssuer) => {
            let roots = context.map_or("the trusted roots", |c| c.roots.as_str());
            format!(
                "certificate not trusted: the server's certificate is not signed by {roots}, \
                 check sslrootcert"
            )
        }
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            let presented = match e {
                E::InvalidCertificate(CertificateError::NotValidForNameContext {
                    presented,
                    ..
                }) if !presented.is_empty() => format!(" (it names {})", presented.join(", ")),
                _ => String::new(),
            };
            format!(
                "certificate not valid for host `{host}`{presented}, check the host in the URL, \
                 or use sslmode=verify-ca to check only the CA"
            )
        }
        E::InvalidCertificate(other) => format!("certificate rejected: {other}"),
        E::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            "the server requires a client certificate, set sslcert and sslkey".to_string()
        }
        E::AlertReceived(
            alert @ (rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::CertificateUnknown
            | rustls::AlertDescription::AccessDenied),
        ) => {
            let cert = context
                .and_then(|c| c.client_cert.as_ref())
                .map(|cert| format!(" {}", cert.display()))
                .unwrap_or_default();
            format!(
                "the server refused the client certificate (alert: {alert:?}), check \
                 sslcert{cert}: is it signed by a CA the server trusts?"
            )
        }
        E::AlertReceived(alert) => format!("the server ended the TLS session (alert: {alert:?})"),
        other => {
            let mode = context.map(|c| format!(" (sslmode={})", c.mode.name()));
            format!("TLS failed{}: {other}", mode.unwrap_or_default())
        }
    }
}

/// A TLS session to the server.
pub(crate) struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl TlsStream for RustlsStream {
    /// `tls-server-end-point` (RFC 5929): the hash of the server's certificate, so that SCRAM
    /// authentication can be bound to this session (`channel_binding=require`).
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        match session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| end_point_hash(cert))
        {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// The certificate's hash for `tls-server-end-point`: with the hash of its signature
/// algorithm, SHA-256 for MD5 and SHA-1; `None` when the algorithm names no single hash
/// (Ed25519), as the server then offers no binding either.
pub(crate) fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    // OIDs (DER content octets) of signature algorithms whose hash is not SHA-256.
    const SHA384: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
    ];
    const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    let oid = signature_algorithm(cert)?;
    let algorithm = if SHA384.contains(&oid) {
        &ring::digest::SHA384
    } else if SHA512.contains(&oid) {
        &ring::digest::SHA512
    } else if oid == ED25519 {
        return None;
    } else {
        &ring::digest::SHA256
    };
    Some(ring::digest::digest(algorithm, cert).as_ref().to_vec())
}

/// The OID of a certificate's `signatureAlgorithm`: `Certificate ::= SEQUENCE {
/// tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signatureValue }`.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (tag, certificate, _) = der(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = der(certificate)?; // tbsCertificate
    let (tag, algorithm, _) = der(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = der(algorithm)?;
    (tag == 0x06).then_some(oid)
}

/// One DER element: its tag, its contents and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `prefer` and `require` without `sslrootcert`: any certificate, as libpq, but the handshake
/// signatures are still checked, so the session is with whoever holds the certificate's key.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Settings, String> {
        let given: Vec<(String, String)> = url
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::new(&given, &move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_url_wins_over_the_environment_and_prefer_is_the_default() {
        assert_eq!(settings(&[], &[]).unwrap().mode, Mode::Prefer);
        assert_eq!(
            settings(&[], &[("PGSSLMODE", "require")]).unwrap().mode,
            Mode::Require
        );
        assert_eq!(
            settings(&[("sslmode", "disable")], &[("PGSSLMODE", "verify-full")])
                .unwrap()
                .mode,
            Mode::Disable
        );
        // An empty variable is no setting.
        assert_eq!(
            settings(&[], &[("PGSSLMODE", "")]).unwrap().mode,
            Mode::Prefer
        );
        let s = settings(
            &[("sslmode", "verify-full")],
            &[
                ("PGSSLROOTCERT", "/ca.pem"),
                ("PGSSLCERT", "/c.pem"),
                ("PGSSLKEY", "/k.pem"),
            ],
        )
        .unwrap();
        assert_eq!(s.roots, Roots::File("/ca.pem".into()));
        assert_eq!(s.client, Some(("/c.pem".into(), "/k.pem".into())));
    }

    #[test]
    fn libpq_rules_for_root_certificates() {
        // `require` with a root certificate checks the chain.
        let s = settings(&[("sslmode", "require"), ("sslrootcert", "/ca.pem")], &[]).unwrap();
        assert_eq!(s.mode, Mode::VerifyCa);
        // The system's roots alone mean verify-full, and nothing weaker.
        let s = settings(&[("sslrootcert", "system")], &[]).unwrap();
        assert_eq!((s.mode, s.roots), (Mode::VerifyFull, Roots::System));
        let err =
            settings(&[("sslrootcert", "system"), ("sslmode", "verify-ca")], &[]).unwrap_err();
        assert!(err.contains("verify-full"), "{err}");
        assert_eq!(
            settings(&[("sslmode", "verify-ca")], &[]).unwrap().roots,
            Roots::Builtin
        );
    }

    #[test]
    fn bad_settings_name_their_source() {
        let err = settings(&[], &[("PGSSLMODE", "sometimes")]).unwrap_err();
        assert!(err.starts_with("PGSSLMODE: sslmode `sometimes`"), "{err}");
        let err = settings(&[("sslmode", "allow")], &[]).unwrap_err();
        assert!(
            err.starts_with("sslmode: sslmode `allow` is not supported"),
            "{err}"
        );
        let err = settings(&[("sslcert", "/c.pem")], &[]).unwrap_err();
        assert_eq!(err, "sslcert is given without sslkey (PGSSLKEY)");
        let err = settings(&[], &[("PGSSLKEY", "/k.pem")]).unwrap_err();
        assert_eq!(err, "PGSSLKEY is given without sslcert (PGSSLCERT)");
    }

    #[test]
    fn unreadable_files_are_named() {
        let s = settings(
            &[
                ("sslmode", "verify-full"),
                ("sslrootcert", "/no/such/ca.pem"),
            ],
            &[],
        )
        .unwrap();
        let err = s.connector().err().unwrap();
        assert!(
            err.starts_with("sslrootcert /no/such/ca.pem: cannot read"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let s = settings(
            &[
                ("sslmode", "verify-ca"),
                ("sslrootcert", junk.to_str().unwrap()),
            ],
            &[],
        )
        .unwrap();
        let err = s.connector().err().unwrap();
        assert!(err.ends_with("holds no PEM certificate"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_private_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        std::fs::write(&key, "not a key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = private_key(&key).unwrap_err();
        assert!(err.contains("has permissions 0644"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = private_key(&key).unwrap_err();
        assert!(err.contains("holds no unencrypted private key"), "{err}");
    }

    #[test]
    fn der_walks_only_what_is_there() {
        assert_eq!(
            der(&[0x30, 0x03, 1, 2, 3, 9]),
            Some((0x30, &[1u8, 2, 3][..], &[9u8][..]))
        );
        assert_eq!(
            der(&[0x30, 0x81, 0x02, 7, 8]),
            Some((0x30, &[7u8, 8][..], &[][..]))
        );
        assert_eq!(der(&[0x30, 0x05, 1]), None);
        assert_eq!(der(&[0x30, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(der(&[0x30]), None);
        assert_eq!(end_point_hash(b"not a certificate"), None);
    }

    /// Certificates signed with ECDSA over SHA-256 and SHA-384, and with Ed25519, made with
    /// `openssl req -x509`; their hashes are `openssl x509 -fingerprint -sha256` (`-sha384`).
    const SHA256_CERT: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBtDCCAVugAwIBAgICEjQwCgYIKoZIzj0EAwIwGjEYMBYGA1UEAwwPY2hhc3Np\n\
cyB0ZXN0IENBMCAXDTI2MTIwNzAzNTczM1oYDzIxMjYxMTEzMDM1NzMzWjAUMRIw\n\
EAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATu74Ox\n\
UsS3A9+ssQ8j2gZtRHyGJ9fBLP/mt7jCa5TmhaPB6P9bOlYmgGecgSrpo7YCrrWU\n\
xO19NB7NQFoZtIAyo4GUMIGRMCwGA1UdEQQlMCOCCWxvY2FsaG9zdIcEfwAAAYcQ\n\
AAAAAAAAAAAAAAAAAAAAATATBgNVHSUEDDAKBggrBgEFBQcDATAMBgNVHRMBAf8E\n\
AjAAMB0GA1UdDgQWBBQUy184QdNComWAhSlqsNbbr+4BCTAfBgNVHSMEGDAWgBTX\n\
5tj310nxoboZJCvN4C/Y6XwLDzAKBggqhkjOPQQDAgNHADBEAiBzkJKZ/SR1MtBA\n\
yAnNoFlxWI47t+umpKNqWzIKQecyjAIgTmXTnFSsFKJh4hJyOlpCO4UWMM7/xf28\n\
Jefn1e31g/Q=\n\
-----END CERTIFICATE-----\n\
";
    const SHA256_FINGERPRINT: &str =
        "ea418e903b3d927144d1022b96600901d1d241015fb6be8ff02243588ea7276a";
    const SHA384_CERT: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBsTCCATigAwIBAgIUdX7hHcrXhvjR1df/Div0dzMXsAgwCgYIKoZIzj0EAwMw\n\
DzENMAsGA1UEAwwEcDM4NDAgFw0yNjEyMDcwNDAwMjVaGA8yMTI2MTExMzA0MDAy\n\
NVowDzENMAsGA1UEAwwEcDM4NDB2MBAGByqGSM49AgEGBSuBBAAiA2IABHmADjhO\n\
xIVf7/VwymEkYEJdlDp91tI9Xs/6dTPf3h+yroTOSmtVUA2o/7atwCf9OZDqcfM2\n\
+ceMs5s9BFucGBVsJysGAC5+1Kq1D2Rnx0ndn2BQ4FaZdVg84sg+BTB5KqNTMFEw\n\
HQYDVR0OBBYEFF0AOv/kA3IWUWYe85cLhG0nlIaDMB8GA1UdIwQYMBaAFF0AOv/k\n\
A3IWUWYe85cLhG0nlIaDMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwMDZwAw\n\
ZAIwbX15OrIxP9EcZHtuTtvrwdjgg12Eo4wF2lDzENHaoLwt9hgZrSnERbuXB/eS\n\
liP7AjAB+ZjeVUu/Nke41HNNwaDqIe+Rzg4EKV+Nm5X5oXGMty2bZYPCsl5Ak64c\n\
xiTwzas=\n\
-----END CERTIFICATE-----\n\
";
    const SHA384_FINGERPRINT: &str = "ae884479b380cb9018d49d22d3fc8610655f9aaf623d08221db20c73bd440b53aa8c5bcaef3eaa6d98279c9fe764b697";
    const ED25519_CERT: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBMDCB46ADAgECAhRoaXLiVf6H26abk/lRJlqJq71VBzAFBgMrZXAwDTELMAkG\n\
A1UEAwwCZWQwIBcNMjYxMjA3MDQwMDI1WhgPMjEyNjExMTMwNDAwMjVaMA0xCzAJ\n\
BgNVBAMMAmVkMCowBQYDK2VwAyEAZY4MQwK5crjeMY0KYP8QRa14MiOQ3AurLYUT\n\
ns0kAdyjUzBRMB0GA1UdDgQWBBQC+O3cqvAK+tKcL7IHW04H4xjBejAfBgNVHSME\n\
GDAWgBQC+O3cqvAK+tKcL7IHW04H4xjBejAPBgNVHRMBAf8EBTADAQH/MAUGAytl\n\
cANBAN3I0xpHKNsj8H+H9gf+Hl1HVdHM1lwRvc2BqCxHwlpuWRnqP7OHDNB5y6KB\n\
trYncxAwqIwj2X4VscxL5YufAQE=\n\
-----END CERTIFICATE-----\n\
";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let hash = end_point_hash(&der(SHA256_CERT)).unwrap();
        assert_eq!(hex(&hash), SHA256_FINGERPRINT);
        let hash = end_point_hash(&der(SHA384_CERT)).unwrap();
        assert_eq!(hex(&hash), SHA384_FINGERPRINT);
        assert_eq!(end_point_hash(&der(ED25519_CERT)), None);
    }
}
