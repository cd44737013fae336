//! PostgreSQL URLs: parsing, connecting, and saying what went wrong without the password.

use std::error::Error as _;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, Connection, Socket};

use super::tls::{self, MakeRustls, RustlsStream};
use crate::Error;

/// Where to connect and how: the parsed URL and its TLS connector.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The URL without its TLS parameters, which tokio-postgres does not know.
    pub(crate) config: Config,
    /// The TLS connector the URL and the `PGSSL*` variables ask for.
    tls: MakeRustls,
}

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Server settings every session gets unless the URL's `options` sets them: no journal
/// operation is a statement that runs a minute, or a transaction left idle that long (a
/// process that stopped mid-transaction must not hold its locks and rows).
const SESSION_SETTINGS: [(&str, &str); 2] = [
    ("statement_timeout", "60s"),
    ("idle_in_transaction_session_timeout", "60s"),
];

/// TCP keepalives, unless the URL says otherwise: a connection whose peer vanished silently (a
/// failover, a dropped NAT entry) is noticed within about a minute instead of the system's two
/// hours, so it cannot hold an append or a lease renewal that long.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may go unacknowledged before the connection is given up
/// (`tcp_user_timeout`), unless the URL says.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// tokio-postgres' keepalive idle time when nothing sets it.
const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// Sets chassis' session settings, keepalives and TCP user timeout where the URL is silent.
fn bound_sessions(config: &mut Config) {
    let given = config.get_options().unwrap_or_default().to_string();
    let mut options = given.clone();
    for (name, value) in SESSION_SETTINGS {
        if !given.contains(name) {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&format!("-c {name}={value}"));
        }
    }
    config.options(options);
    if config.get_keepalives_idle() == DEFAULT_KEEPALIVE_IDLE {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
}

/// True when `target` is a PostgreSQL URL rather than a file path.
pub(crate) fn is_url(target: &str) -> bool {
    let lower = target.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `target` with any password replaced by `***`, in the user part and in a `password=`
/// parameter; safe to print even when the URL does not parse.
pub fn redact(target: &str) -> String {
    let Some(scheme_end) = target.find("://") else {
        return target.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &target[rest_start..];
    let query_start = rest.find(['?', '#']).unwrap_or(rest.len());
    let mut out = target[..rest_start].to_string();
    // The last `@` before the query ends the user part, even if the password holds `/` or `@`.
    let after_user = match rest[..query_start].rfind('@') {
        Some(at) => {
            let user = &rest[..at];
            match user.find(':') {
                Some(colon) => {
                    out.push_str(&user[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(user),
            }
            at
        }
        None => 0,
    };
    out.push_str(&rest[after_user..query_start]);
    let query = &rest[query_start..];
    if let Some(params) = query.strip_prefix('?') {
        out.push('?');
        let redacted: Vec<String> = params
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => param.to_string(),
            })
            .collect();
        out.push_str(&redacted.join("&"));
    } else {
        out.push_str(query);
    }
    out
}

/// A URL parsed into a connection configuration, with chassis' defaults; TLS settings the URL
/// lacks come from the `PGSSL*` variables of the process.
pub(crate) fn parse(url: &str) -> Result<Target, Error> {
    parse_with(url, &|name| std::env::var(name).ok())
}

/// [`parse`], with the environment given.
pub(crate) fn parse_with(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, Error> {
    let invalid = |message: String| Error::InvalidTarget {
        target: redact(url),
        message,
    };
    let (rest, given) = take_tls_params(url.trim());
    let mut config: Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        invalid(format!("not a valid PostgreSQL URL: {}", describe(&e)))
    })?;
    if config.get_hosts().is_empty() {
        return Err(invalid("the URL names no host".to_string()));
    }
    let settings = tls::Settings::new(&given, env).map_err(invalid)?;
    let tls = settings.connector().map_err(invalid)?;
    config.ssl_mode(settings.mode.negotiation());
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("chassis");
    }
    bound_sessions(&mut config);
    Ok(Target { config, tls })
}

/// `url` without the query parameters [`tls::PARAMS`] names, and those parameters (decoded).
fn take_tls_params(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), Vec::new());
    };
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for param in query.split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = percent_decode(key);
        if tls::PARAMS.iter().any(|(name, _)| *name == key) {
            taken.push((key, percent_decode(value)));
        } else {
            kept.push(param);
        }
    }
    if kept.is_empty() {
        (base.to_string(), taken)
    } else {
        (format!("{base}?{}", kept.join("&")), taken)
    }
}

/// `%XX` escapes decoded (invalid ones kept as written), as tokio-postgres decodes the rest.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where `config` connects to, as `host:port` (never user or password).
pub(crate) fn hosts(config: &Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Opens one connection; the caller drives the returned `Connection`.
pub(crate) async fn connect(
    target: &Target,
) -> Result<(Client, Connection<Socket, RustlsStream>), Error> {
    let config = &target.config;
    config
        .connect(target.tls.clone())
        .await
        .map_err(|e| Error::Connect {
            target: hosts(config),
            message: describe(&e),
        })
}

/// A client error as one lowercase line: the server's message, or the IO cause, or the
/// client's own words with their cause.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        };
    }
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return describe_io(io);
        }
        source = cause.source();
    }
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// An IO error as one lowercase line; a TLS error inside it (the server refusing the session
/// after the handshake, say) in the words of [`tls::describe_tls`].
pub(crate) fn describe_io(io: &std::io::Error) -> String {
    use std::io::ErrorKind;
    if let Some(e) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return tls::describe_tls(e, "the server", None);
    }
    match io.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset by the server".to_string(),
        ErrorKind::TimedOut => "timed out".to_string(),
        ErrorKind::HostUnreachable => "host unreachable".to_string(),
        ErrorKind::NetworkUnreachable => "network unreachable".to_string(),
        ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        _ => io.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_wherever_they_are() {
        assert_eq!(
            redact("postgres://bob:s3cret@db:5432/chassis"),
            "postgres://bob:***@db:5432/chassis"
        );
        assert_eq!(
            redact("postgresql://bob:p/a@ss@db/x?sslmode=disable"),
            "postgresql://bob:***@db/x?sslmode=disable"
        );
        assert_eq!(
            redact("postgres://db/x?user=bob&password=hunter2&x=1"),
            "postgres://db/x?user=bob&password=***&x=1"
        );
        assert_eq!(redact("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(redact("/var/lib/chassis.db"), "/var/lib/chassis.db");
    }

    #[test]
    fn bad_urls_are_named_without_the_password() {
        let err = parse("postgres://bob:hunter2@db:notaport/x").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("postgres://bob:***@db:notaport/x"), "{text}");
        let err = parse("postgres://db/x?frobnicate=1").unwrap_err();
        assert!(err.to_string().contains("frobnicate"), "{err}");
    }

    /// Sessions are bounded where the URL is silent (statement and idle-transaction timeouts,
    /// keepalives, TCP user timeout), and what the URL sets is kept.
    #[test]
    fn sessions_are_bounded_unless_the_url_says_otherwise() {
        let target = parse("postgres://db/x").unwrap();
        let c = &target.config;
        assert_eq!(
            c.get_options(),
            Some("-c statement_timeout=60s -c idle_in_transaction_session_timeout=60s")
        );
        assert!(c.get_keepalives());
        assert_eq!(c.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(c.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(c.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        assert_eq!(c.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));

        let target = parse(
            "postgres://db/x?options=-c%20statement_timeout%3D5s&keepalives_idle=7&tcp_user_timeout=9",
        )
        .unwrap();
        let c = &target.config;
        assert_eq!(
            c.get_options(),
            Some("-c statement_timeout=5s -c idle_in_transaction_session_timeout=60s")
        );
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(7));
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(9)));
    }

    #[test]
    fn hosts_show_host_and_port_only() {
        let target = parse("postgres://bob:pw@127.0.0.1:5999/x").unwrap();
        assert_eq!(hosts(&target.config), "127.0.0.1:5999");
        let target = parse("postgres://bob:pw@a,b:6000/x").unwrap();
        assert_eq!(hosts(&target.config), "a:5432,b:6000");
    }

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (rest, taken) = take_tls_params(
            "postgres://db/x?sslmode=verify-full&options=-c%20a%3Db&sslrootcert=%2Fetc%2Fca%20x.pem",
        );
        assert_eq!(rest, "postgres://db/x?options=-c%20a%3Db");
        assert_eq!(
            taken,
            vec![
                ("sslmode".to_string(), "verify-full".to_string()),
                ("sslrootcert".to_string(), "/etc/ca x.pem".to_string()),
            ]
        );
        assert_eq!(
            take_tls_params("postgres://db/x?sslmode=disable").0,
            "postgres://db/x"
        );
        assert_eq!(take_tls_params("postgres://db/x").0, "postgres://db/x");
        assert_eq!(percent_decode("%zz%41%"), "%zzA%");
    }

    #[test]
    fn tls_settings_come_from_the_url_then_the_environment() {
        use tokio_postgres::config::SslMode;
        let env = |name: &str| (name == "PGSSLMODE").then(|| "require".to_string());
        let target = parse_with("postgres://db/x", &env).unwrap();
        assert_eq!(target.config.get_ssl_mode(), SslMode::Require);
        let target = parse_with("postgres://db/x?sslmode=disable", &env).unwrap();
        assert_eq!(target.config.get_ssl_mode(), SslMode::Disable);
        let target = parse_with("postgres://db/x?sslmode=verify-full", &env).unwrap();
        assert_eq!(target.config.get_ssl_mode(), SslMode::Require);
        let err = parse_with("postgres://bob:hunter2@db/x?sslmode=sometimes", &env).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("sslmode `sometimes`") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
