//! TLS to PostgreSQL on the real server: `require`, `verify-full` with the right CA and a
//! wrong one, `verify-ca`, a client certificate, and the `PGSSL*` variables.
//!
//! Set-up (once per server, shared by every test process): the running cluster is switched to
//! a certificate of a CA made here, rather than a second cluster started, because that needs
//! nothing but the superuser connection the other tests already use (no root, no free port,
//! no `initdb`). Under a PostgreSQL advisory lock, unless it was done before:
//! - `openssl` (the CLI) makes a CA, a server certificate for `localhost`, `127.0.0.1` and
//!   `::1`, and a client certificate (`CN=chassis-test-client`), all signed by the CA;
//! - the files are written into the server's data directory as `chassis_test_tls_*` by the
//!   server's own user (`COPY … TO PROGRAM`, with `umask 077`, since PostgreSQL refuses a key
//!   others can read, and `lo_export` writes 0644);
//! - `ALTER SYSTEM SET ssl = on, ssl_cert_file, ssl_key_file, ssl_ca_file` and
//!   `SELECT pg_reload_conf()`, then wait until new sessions see the new files.
//!
//! Connections without TLS keep working (`host` lines in `pg_hba.conf` accept both, and a
//! client certificate is only asked for, never required), so the other tests are unaffected.
//! To undo it: `ALTER SYSTEM RESET ssl_cert_file; ALTER SYSTEM RESET ssl_key_file;
//! ALTER SYSTEM RESET ssl_ca_file; SELECT pg_reload_conf();` (and `ssl` if it was off).
//!
//! Without a server (or without `openssl`) the tests say so loudly and pass, unless `CI` or
//! `CHASSIS_TEST_PG_REQUIRED` is set: then they fail, as the other PostgreSQL tests do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chassis_store::{Error, PostgresJournal};
use tokio_postgres::NoTls;

use super::{Schema, base_url, required};

/// Files in the data directory, by role.
const PREFIX: &str = "chassis_test_tls_";
const CLIENT_DN: &str = "/CN=chassis-test-client";

/// Set by a test that runs this binary again to read the `PGSSL*` variables.
const CHILD: &str = "CHASSIS_TEST_TLS_CHILD";

/// What a test needs: the CA and the client certificate, as local files.
struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
    fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.crt")
    }
    fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }
}

fn skip(what: &str) -> Option<Tls> {
    let banner = "!".repeat(78);
    let message = format!("{banner}\n!! {what}: SKIPPING the PostgreSQL TLS tests.\n{banner}");
    if required() {
        panic!("{message}");
    }
    eprintln!("{message}");
    None
}

/// Runs `openssl` in `dir`; the error says what failed.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A CA (`ca.crt`, `ca.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "36500",
            "-subj",
            &format!("/CN={name}"),
        ],
    )
}

/// `NAME.crt` and `NAME.key` in `dir`, signed by the CA there, with these extensions.
fn make_leaf(dir: &Path, name: &str, subject: &str, extensions: &str) -> Result<(), String> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    )?;
    let serial = format!(
        "0x{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(1)
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "36500",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.crt"),
        ],
    )
}

fn chmod_600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The server switched to the test CA's certificate (see the module's doc), and the CA and
/// client certificate at hand; `None` (after a loud message) when there is no server.
async fn tls() -> Option<Tls> {
    let admin = match tokio_postgres::connect(&base_url(), NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => {
            return skip(&format!(
                "PostgreSQL at {} is unreachable ({e})",
                chassis_store::redact(&base_url())
            ));
        }
    };
    if let Err(e) = openssl(Path::new("."), &["version"]) {
        return skip(&e);
    }
    admin
        .batch_execute("SELECT pg_advisory_lock(hashtext('chassis_test_tls'))")
        .await
        .unwrap();
    let data: String = admin
        .query_one("SHOW data_directory", &[])
        .await
        .unwrap()
        .get(0);
    let path = |role: &str| format!("{data}/{PREFIX}{role}");
    let show = async |setting: &str| -> String {
        admin
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap()
            .get(0)
    };
    let read = async |role: &str| -> Option<Vec<u8>> {
        admin
            .query_one("SELECT pg_read_binary_file($1)", &[&path(role)])
            .await
            .ok()
            .map(|row| row.get(0))
    };
    let dir = tempfile::tempdir().unwrap();
    let installed = show("ssl").await == "on"
        && show("ssl_cert_file").await == path("server.crt")
        && show("ssl_ca_file").await == path("ca.crt");
    let mut files = Vec::new();
    if installed {
        for role in ["ca.crt", "client.crt", "client.key"] {
            match read(role).await {
                Some(bytes) => files.push((role, bytes)),
                None => break,
            }
        }
    }
    if files.len() == 3 {
        for (role, bytes) in files {
            std::fs::write(dir.path().join(role), bytes).unwrap();
        }
    } else {
        let work = dir.path();
        make_ca(work, "chassis test CA").unwrap();
        make_leaf(
            work,
            "server",
            "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        make_leaf(
            work,
            "client",
            "/CN=chassis-test-client",
            "extendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for role in [
            "ca.crt",
            "server.crt",
            "server.key",
            "client.crt",
            "client.key",
        ] {
            let bytes = std::fs::read(work.join(role)).unwrap();
            let b64 = base64(&bytes);
            // Written by the server's user, readable by it alone.
            admin
                .batch_execute(&format!(
                    "COPY (SELECT 1) TO PROGRAM 'umask 077 && echo {b64} | base64 -d > {}'",
                    path(role)
                ))
                .await
                .unwrap();
        }
        for (setting, role) in [
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
            ("ssl_ca_file", "ca.crt"),
        ] {
            admin
                .batch_execute(&format!("ALTER SYSTEM SET {setting} = '{}'", path(role)))
                .await
                .unwrap();
        }
        // One statement each: ALTER SYSTEM refuses to run in a transaction.
        admin
            .batch_execute("ALTER SYSTEM SET ssl = on")
            .await
            .unwrap();
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .unwrap();
        // The postmaster reloads asynchronously; new sessions show when it has. However long
        // that takes: a server that never reloads hangs the test (`.config/nextest.toml` ends
        // it), rather than a slow one failing it.
        loop {
            let (fresh, connection) = tokio_postgres::connect(&base_url(), NoTls).await.unwrap();
            tokio::spawn(connection);
            let cert: String = fresh
                .query_one("SHOW ssl_cert_file", &[])
                .await
                .unwrap()
                .get(0);
            if cert == path("server.crt") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    chmod_600(&dir.path().join("client.key"));
    admin
        .batch_execute("SELECT pg_advisory_unlock(hashtext('chassis_test_tls'))")
        .await
        .unwrap();
    Some(Tls { dir })
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A name for the test's connections, to find them in `pg_stat_ssl`.
fn app_name(test: &str) -> String {
    format!("chassis_tls_{test}_{}", std::process::id())
}

/// The schema's URL (on 127.0.0.1, as the server certificate names it) with `params`.
fn url(schema: &Schema, params: &str) -> String {
    format!("{}&{params}", schema.url())
}

/// Whether the sessions named `app` use TLS, and the client certificate's DN they showed.
async fn seen(app: &str) -> (bool, Option<String>) {
    let (client, connection) = tokio_postgres::connect(&base_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT bool_and(s.ssl), max(s.client_dn)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    (row.get::<_, Option<bool>>(0).unwrap_or(false), row.get(1))
}

#[tokio::test]
async fn require_encrypts_disable_does_not_and_prefer_takes_tls_when_offered() {
    let Some(_tls) = tls().await else { return };
    let Some(schema) = super::new_schema().await else {
        return;
    };
    for (mode, encrypted) in [("require", true), ("disable", false), ("prefer", true)] {
        let app = app_name(mode);
        let journal = PostgresJournal::connect(
            &url(&schema, &format!("sslmode={mode}&application_name={app}")),
            1,
        )
        .await
        .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        assert_eq!(seen(&app).await, (encrypted, None), "sslmode={mode}");
        drop(journal);
    }
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects() {
    let Some(tls) = tls().await else { return };
    let Some(schema) = super::new_schema().await else {
        return;
    };
    let app = app_name("verify_full");
    let target = url(
        &schema,
        &format!(
            "sslmode=verify-full&sslrootcert={}&application_name={app}",
            tls.ca().display()
        ),
    );
    let journal = chassis_store::open(&target).await.unwrap();
    assert!(journal.list(&Default::default()).await.unwrap().is_empty());
    assert_eq!(seen(&app).await, (true, None));
}

#[tokio::test]
async fn verify_full_with_a_wrong_ca_names_the_target_and_the_setting() {
    let Some(_tls) = tls().await else { return };
    let Some(schema) = super::new_schema().await else {
        return;
    };
    let other = tempfile::tempdir().unwrap();
    make_ca(other.path(), "some other CA").unwrap();
    let ca = other.path().join("ca.crt");
    // A password in the URL, which no message may show.
    let target = url(
        &schema,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    )
    .replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    let err = PostgresJournal::connect(&target, 1).await.err().unwrap();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    let text = err.to_string();
    let host = host_port();
    assert_eq!(
        text,
        format!(
            "cannot connect to PostgreSQL at {host}: error performing TLS handshake: certificate \
             not trusted: the server's certificate is not signed by the CA in sslrootcert={}, \
             check sslrootcert",
            ca.display()
        )
    );
    assert!(!text.contains("hunter2"), "{text}");
}

/// `host:port` of the base URL, as errors name it.
fn host_port() -> String {
    let config: tokio_postgres::Config = base_url().parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    };
    format!(
        "{host}:{}",
        config.get_ports().first().copied().unwrap_or(5432)
    )
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let Some(tls) = tls().await else { return };
    let Some(schema) = super::new_schema().await else {
        return;
    };
    // The server's address under a name its certificate does not hold.
    let config: tokio_postgres::Config = base_url().parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let (_, query) = schema.url().split_once('?').unwrap();
    let named = |mode: &str| {
        format!(
            "postgres://postgres@chassis-test.invalid:{port}/test?{query}&hostaddr=127.0.0.1\
             &sslmode={mode}&sslrootcert={}",
            tls.ca().display()
        )
    };
    let err = PostgresJournal::connect(&named("verify-full"), 1)
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot connect to PostgreSQL at chassis-test.invalid:{port}: error performing TLS \
             handshake: certificate not valid for host `chassis-test.invalid`"
        )),
        "{text}"
    );
    assert!(
        text.contains("localhost") && text.contains("verify-ca"),
        "{text}"
    );
    PostgresJournal::connect(&named("verify-ca"), 1)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_client_certificate_is_presented() {
    let Some(tls) = tls().await else { return };
    let Some(schema) = super::new_schema().await else {
        return;
    };
    let app = app_name("client_cert");
    let target = url(
        &schema,
        &format!(
            "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}&application_name={app}",
            tls.ca().display(),
            tls.client_cert().display(),
            tls.client_key().display()
        ),
    );
    let _journal = PostgresJournal::connect(&target, 1).await.unwrap();
    assert_eq!(seen(&app).await, (true, Some(CLIENT_DN.to_string())));

    // A certificate of a CA the server does not trust is refused by the server.
    let other = tempfile::tempdir().unwrap();
    make_ca(other.path(), "some other CA").unwrap();
    make_leaf(
        other.path(),
        "client",
        "/CN=stranger",
        "extendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    chmod_600(&other.path().join("client.key"));
    let target = url(
        &schema,
        &format!(
            "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            tls.ca().display(),
            other.path().join("client.crt").display(),
            other.path().join("client.key").display()
        ),
    );
    let err = PostgresJournal::connect(&target, 1).await.err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{text}");
    assert!(
        text.ends_with(
            "the server refused the client certificate (alert: UnknownCA), check sslcert: is it \
             signed by a CA the server trusts?"
        ),
        "{text}"
    );
}

#[test]
fn the_pgssl_variables_are_read_when_the_url_is_silent() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some((tls, schema)) = runtime.block_on(async {
        let tls = tls().await?;
        Some((tls, super::new_schema().await?))
    }) else {
        return;
    };
    let app = app_name("env");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tls::pgssl_child", "--nocapture"])
        .env(CHILD, format!("{}&application_name={app}", schema.url()))
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", tls.ca())
        .env("PGSSLCERT", tls.client_cert())
        .env("PGSSLKEY", tls.client_key())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("pgssl_child: connected"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("ssl=true dn={CLIENT_DN}")),
        "{stdout}"
    );

    // A wrong CA in PGSSLROOTCERT is the same clear error.
    let other = tempfile::tempdir().unwrap();
    make_ca(other.path(), "some other CA").unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tls::pgssl_child", "--nocapture"])
        .env(CHILD, schema.url())
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", other.path().join("ca.crt"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("certificate not trusted"), "{stdout}");
}

/// Run by [`the_pgssl_variables_are_read_when_the_url_is_silent`] with the URL in [`CHILD`]:
/// connects as the `PGSSL*` variables say and prints what the server saw.
#[tokio::test]
async fn pgssl_child() {
    let Ok(target) = std::env::var(CHILD) else {
        return;
    };
    match PostgresJournal::connect(&target, 1).await {
        Ok(_journal) => {
            let app = target.rsplit_once("application_name=").map(|(_, a)| a);
            let (ssl, dn) = seen(app.unwrap_or_default()).await;
            println!(
                "pgssl_child: connected ssl={ssl} dn={}",
                dn.unwrap_or_default()
            );
        }
        Err(e) => println!("pgssl_child: {e}"),
    }
}
