//! PostgreSQL URLs: parsing, connecting, and saying what went wrong without the password.

use std::error::Error as _;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls, Socket};

use crate::Error;

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A URL parsed into a connection configuration, with chassis' defaults.
pub(crate) fn parse(url: &str) -> Result<Config, Error> {
    let invalid = |message: String| Error::InvalidTarget {
        target: redact(url),
        message,
    };
    let mut config: Config = url.trim().parse().map_err(|e: tokio_postgres::Error| {
        invalid(format!("not a valid PostgreSQL URL: {}", describe(&e)))
    })?;
    if config.get_hosts().is_empty() {
        return Err(invalid("the URL names no host".to_string()));
    }
    if config.get_ssl_mode() == SslMode::Require {
        return Err(invalid(
            "sslmode=require: TLS to PostgreSQL is not supported yet".to_string(),
        ));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("chassis");
    }
    Ok(config)
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
    config: &Config,
) -> Result<(Client, Connection<Socket, NoTlsStream>), Error> {
    config.connect(NoTls).await.map_err(|e| Error::Connect {
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

fn describe_io(io: &std::io::Error) -> String {
    use std::io::ErrorKind;
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

    #[test]
    fn hosts_show_host_and_port_only() {
        let config = parse("postgres://bob:pw@127.0.0.1:5999/x").unwrap();
        assert_eq!(hosts(&config), "127.0.0.1:5999");
        let config = parse("postgres://bob:pw@a,b:6000/x").unwrap();
        assert_eq!(hosts(&config), "a:5432,b:6000");
    }
}
