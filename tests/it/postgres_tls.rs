//! `sslmode` against the real local PostgreSQL: `require` encrypts, `verify-full` connects with
//! the right CA and is refused with a wrong CA or a wrong host name, and `careflow serve` runs
//! on a `verify-full` URL (issue #15 part 5, the TLS item).
//!
//! [`server_ca`] makes the server present a certificate of a test CA, for `localhost` and
//! `127.0.0.1`, once per PostgreSQL server and idempotently (docs/event-store.md "TLS"): under
//! an advisory lock, when the server does not already serve careflow's test certificate, it
//! makes a CA and a server certificate with rcgen, writes them into the data directory with
//! `COPY … TO` (so the files belong to the server's own user, the key mode 0600), points
//! `ssl_cert_file`/`ssl_key_file` at them with `ALTER SYSTEM`, turns `ssl` on and reloads. A
//! server with `ssl = on` still accepts connections without TLS, so no other test is disturbed;
//! the CA's certificate stays beside them for the next run to read back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::Api;
use crate::server::Server;
use crate::support::{TempDir, drop_schema, eventually, postgres_url, unique_schema};
use crate::tls::{TestCa, register};
use careflow::store::pg_connect::PgConnect;

const CA_FILE: &str = "careflow-test-ca.pem";
const CERT_FILE: &str = "careflow-test-server.pem";
const KEY_FILE: &str = "careflow-test-server.key";

/// `url` with more query parameters.
fn with(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

/// Writes `text` to `path` on the server's side, as the server's user.
async fn server_write(client: &tokio_postgres::Client, path: &str, text: &str) {
    // PEM lines hold only base64, dashes and spaces: safe in a literal, and COPY's text
    // format writes them back unchanged, one row a line.
    let lines: Vec<String> = text.lines().map(|line| format!("'{line}'")).collect();
    client
        .batch_execute(&format!(
            "COPY (SELECT line FROM unnest(ARRAY[{}]::text[]) WITH ORDINALITY AS t(line, n) ORDER BY n) TO '{path}'",
            lines.join(",")
        ))
        .await
        .unwrap();
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
    let show = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let data_dir = show("data_directory").await;
    let cert_path = format!("{data_dir}/{CERT_FILE}");
    let served: Option<String> = client
        .query_one(
            "SELECT pg_read_file($1::text, 0, 1048576, true)",
            &[&CA_FILE],
        )
        .await
        .unwrap()
        .get(0);
    let ca_pem = match served {
        Some(pem) if show("ssl").await == "on" && show("ssl_cert_file").await == cert_path => pem,
        _ => {
            let ca = TestCa::new("careflow test PostgreSQL CA");
            let server = ca.issue(&["localhost", "127.0.0.1"]);
            server_write(&client, &format!("{data_dir}/{KEY_FILE}"), &server.key_pem).await;
            server_write(&client, &cert_path, &server.cert_pem).await;
            // Written last: its presence says the pair beside it is complete.
            server_write(&client, &format!("{data_dir}/{CA_FILE}"), &ca.pem()).await;
            for statement in [
                format!("ALTER SYSTEM SET ssl_cert_file = '{cert_path}'"),
                format!("ALTER SYSTEM SET ssl_key_file = '{data_dir}/{KEY_FILE}'"),
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
