//! `sslmode` against the real local PostgreSQL: `require` encrypts, `verify-full` connects with
//! the right CA and is refused with a wrong CA or a wrong host name, and `careflow serve` runs
//! on a `verify-full` URL (issue #15 part 5, the TLS item).
//!
//! [`server_ca`] makes the server present a certificate of a test CA, for `localhost` and
//! `127.0.0.1`, once per PostgreSQL server and idempotently (docs/event-store.md "TLS"): under
//! an advisory lock, when the server does not already serve careflow's test certificate, it
//! makes a CA and a server certificate with rcgen, writes them into the data directory under
//! names of their own (owned by the server's user, the key mode 0600: PostgreSQL refuses to
//! start with a key others can read), points `ssl_cert_file`/`ssl_key_file` at them with
//! `ALTER SYSTEM`, turns `ssl` on and reloads. A server with `ssl = on` still accepts
//! connections without TLS, so no other test is disturbed; the CA's certificate stays beside
//! them for the next run to read back. The tests run as root on the server's machine (as CI
//! does), since they write into its data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::Api;
use crate::server::Server;
use crate::support::{TempDir, drop_schema, eventually, postgres_url, unique_schema};
use crate::tls::{TestCa, register};
use careflow::store::pg_connect::PgConnect;

/// `url` with more query parameters.
fn with(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

/// The files of one generation of the test certificates in the data directory, named by an id
/// of their own: a new generation never rewrites files the server's configuration names, so
/// the server can restart at any moment and find a matching key and certificate.
struct Generation {
    key: PathBuf,
    cert: PathBuf,
    ca: PathBuf,
}

impl Generation {
    fn in_data_dir(data_dir: &Path, id: &str) -> Generation {
        let file = |suffix: &str| data_dir.join(format!("careflow-test-{id}-{suffix}"));
        Generation {
            key: file("server.key"),
            cert: file("server.pem"),
            ca: file("ca.pem"),
        }
    }

    /// The generation whose certificate `ssl_cert_file` names, if it is one.
    fn served(data_dir: &Path, ssl_cert_file: &str) -> Option<Generation> {
        let name = Path::new(ssl_cert_file)
            .strip_prefix(data_dir)
            .ok()?
            .to_str()?;
        let id = name
            .strip_prefix("careflow-test-")?
            .strip_suffix("-server.pem")?;
        Some(Generation::in_data_dir(data_dir, id))
    }
}

/// Writes `text` to `path` as the data directory's owner, with `mode`.
fn write_owned(path: &Path, text: &str, mode: u32, owner: &std::fs::Metadata) {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.sync_all().unwrap();
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())).unwrap();
}

/// Makes the PostgreSQL at `url` serve TLS with a certificate of careflow's test CA for
/// `localhost` and `127.0.0.1` (see the module docs), and writes that CA's certificate into
/// `dir`: its path.
async fn server_ca(url: &str, dir: &Path) -> PathBuf {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // One test process at a time sets the server up; the others find it done.
    client
        .batch_execute("SELECT pg_advisory_lock(hashtext('careflow-test-tls'))")
        .await
        .unwrap();
    let mut shown = Vec::new();
    for name in ["data_directory", "ssl", "ssl_cert_file"] {
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .unwrap();
        shown.push(row.get::<_, String>(0));
    }
    let (data_dir, ssl, cert_file) = (Path::new(&shown[0]), &shown[1], &shown[2]);
    let served = Generation::served(data_dir, cert_file)
        .filter(|_| ssl == "on")
        .and_then(|generation| std::fs::read_to_string(&generation.ca).ok());
    let ca_pem = match served {
        Some(pem) => pem,
        None => {
            let ca = TestCa::new("careflow test PostgreSQL CA");
            let server = ca.issue(&["localhost", "127.0.0.1"]);
            let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
            let files = Generation::in_data_dir(data_dir, &id);
            let owner = std::fs::metadata(data_dir).unwrap();
            // PostgreSQL refuses to start with a key others can read.
            write_owned(&files.key, &server.key_pem, 0o600, &owner);
            write_owned(&files.cert, &server.cert_pem, 0o644, &owner);
            write_owned(&files.ca, &ca.pem(), 0o644, &owner);
            for statement in [
                format!(
                    "ALTER SYSTEM SET ssl_cert_file = '{}'",
                    files.cert.display()
                ),
                format!("ALTER SYSTEM SET ssl_key_file = '{}'", files.key.display()),
                "ALTER SYSTEM SET ssl = on".to_owned(),
                "SELECT pg_reload_conf()".to_owned(),
            ] {
                client.batch_execute(&statement).await.unwrap();
            }
            ca.pem()
        }
    };
    let ca_file = dir.join("postgres-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    // The reload reaches new connections when the postmaster has read the files.
    let verified = with(
        url,
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );
    eventually(
        Duration::from_secs(30),
        "PostgreSQL to serve the test certificate",
        || async {
            PgConnect::from_url(&verified)
                .ok()?
                .connect("test")
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    client
        .batch_execute("SELECT pg_advisory_unlock(hashtext('careflow-test-tls'))")
        .await
        .unwrap();
    ca_file
}

/// Whether this session's connection is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// What connecting with `url` answers: the session's `ssl` flag, or the error with its causes.
async fn attempt(url: &str) -> Result<bool, String> {
    let connect = PgConnect::from_url(url).map_err(|e| careflow::error_chain::error_chain(&e))?;
    match connect.connect("test").await {
        Ok(client) => Ok(encrypted(&client).await),
        Err(error) => Err(careflow::error_chain::error_chain(&error)),
    }
}

#[tokio::test]
async fn sslmode_require_encrypts_and_disable_does_not() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let dir = TempDir::new();
    server_ca(&url, &dir.path()).await;
    assert_eq!(attempt(&with(&url, "sslmode=require")).await, Ok(true));
    assert_eq!(attempt(&with(&url, "sslmode=disable")).await, Ok(false));
    // libpq's default: TLS when the server offers it.
    assert_eq!(attempt(&url).await, Ok(true));
}

#[tokio::test]
async fn verify_full_connects_with_the_right_ca_and_is_refused_with_a_wrong_ca_or_host_name() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let dir = TempDir::new();
    let ca_file = server_ca(&url, &dir.path()).await;
    let stranger = TestCa::new("someone else's CA").write(&dir.path(), "stranger.pem");
    let verify = |mode: &str, ca: &Path| format!("sslmode={mode}&sslrootcert={}", ca.display());

    assert_eq!(
        attempt(&with(&url, &verify("verify-full", &ca_file))).await,
        Ok(true)
    );
    // The same server by its other name in the certificate.
    let by_name = url.replace("@127.0.0.1:", "@localhost:");
    assert_eq!(
        attempt(&with(&by_name, &verify("verify-full", &ca_file))).await,
        Ok(true)
    );

    // A CA that did not sign the server's certificate.
    for mode in ["verify-full", "verify-ca", "require"] {
        let refused = attempt(&with(&url, &verify(mode, &stranger)))
            .await
            .unwrap_err();
        assert!(
            refused.contains(
                "error performing TLS handshake: invalid peer certificate: UnknownIssuer"
            ),
            "{mode}: {refused}"
        );
    }

    // The right server reached under a name its certificate does not carry: `host` is the
    // name checked, `hostaddr` where the connection goes.
    let wrong_host = url.replace("@127.0.0.1:", "@db.wrong.example:");
    let wrong_host = with(&wrong_host, "hostaddr=127.0.0.1");
    let refused = attempt(&with(&wrong_host, &verify("verify-full", &ca_file)))
        .await
        .unwrap_err();
    assert!(
        refused.contains(
            "invalid peer certificate: certificate not valid for name \"db.wrong.example\""
        ),
        "{refused}"
    );
    // verify-ca checks the chain only, as libpq's does.
    assert_eq!(
        attempt(&with(&wrong_host, &verify("verify-ca", &ca_file))).await,
        Ok(true)
    );
}

#[tokio::test]
async fn careflow_serves_commands_on_a_verify_full_database_url() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let dir = TempDir::new();
    let ca_file = server_ca(&url, &dir.path()).await;
    let schema = unique_schema("tls");
    let database_url = with(
        &url,
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );
    let env = [
        ("CAREFLOW_STORE", "postgres"),
        ("CAREFLOW_DATABASE_URL", database_url.as_str()),
        ("CAREFLOW_DATABASE_SCHEMA", schema.as_str()),
    ];
    let token = crate::server::token_with_env(&dir.path(), &env, "system", "ehr");
    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(&token, "patient-accounts", "MRN-PGTLS", register("none"))
        .await;
    let reply = api
        .get("/v1/patient-accounts/MRN-PGTLS", Some(&token))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    drop(server);
    drop_schema(&url, &schema).await;
}
