//! HTTPS to the payer and to Odoo through the real binary, against the fakes behind a TLS
//! front, with certificates the tests make (issue #15 part 5, the TLS item).
//!
//! [`TestCa`] makes a CA with rcgen and issues server certificates from it; [`TlsFront`]
//! terminates TLS on a port of its own with one of them and passes each connection's bytes to
//! a plain fake unchanged, as a hospital's TLS-terminating proxy in front of a payer gateway or
//! Odoo would. careflow is given `https://127.0.0.1:<front>` and the CA's file
//! (`payer_tls_ca_file`, `odoo_tls_ca_file`): that CA is in no system trust store, so an
//! answer proves the file was used, and a front with a certificate of another CA proves that a
//! certificate the file does not vouch for is refused (the call fails as a transport failure:
//! retried, counted by the breaker, never answered).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

use crate::api::Api;
use crate::fake_odoo::FakeOdoo;
use crate::fake_payer::FakePayer;
use crate::odoo::{metric, xmlid};
use crate::process_managers::wait_account_status;
use crate::server::{Server, careflow, run_to_end, token_with_env};
use crate::support::{TempDir, eventually};

const WITHIN: Duration = Duration::from_secs(30);

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA's certificate to `dir/name` (what careflow is configured with).
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Identity {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "careflow test server");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        Identity {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

/// A server's certificate and private key.
pub struct Identity {
    cert: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl Identity {
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![self.cert.clone()], key)
        .unwrap();
        Arc::new(config)
    }
}

/// TLS on a port of 127.0.0.1 of its own, in front of a plain HTTP server; stopped when
/// dropped.
pub struct TlsFront {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    handshakes: Arc<AtomicU32>,
    refused: Arc<AtomicU32>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TlsFront {
    /// Serves TLS with `identity` and passes each connection on to `backend`
    /// (`http://host:port`).
    pub fn start(backend: &str, identity: &Identity) -> TlsFront {
        let backend: SocketAddr = backend
            .strip_prefix("http://")
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config());
        let handshakes = Arc::new(AtomicU32::new(0));
        let refused = Arc::new(AtomicU32::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done, refused_count) = (Arc::clone(&handshakes), Arc::clone(&refused));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let accept = async {
                    while let Ok((tcp, _)) = listener.accept().await {
                        let (acceptor, done, refused) = (
                            acceptor.clone(),
                            Arc::clone(&done),
                            Arc::clone(&refused_count),
                        );
                        tokio::spawn(async move {
                            let mut tls = match acceptor.accept(tcp).await {
                                Ok(tls) => tls,
                                Err(_) => {
                                    refused.fetch_add(1, Ordering::SeqCst);
                                    return;
                                }
                            };
                            done.fetch_add(1, Ordering::SeqCst);
                            if let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await {
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        TlsFront {
            url,
            handshakes,
            refused,
            stop: Some(stop),
        }
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> u32 {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// TLS handshakes the client broke off (it did not trust the certificate).
    pub fn refused(&self) -> u32 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The names every test server certificate is issued for.
const LOCAL: [&str; 2] = ["localhost", "127.0.0.1"];

/// A registration with coverage at payer `ACME` under `member_id`.
pub fn register(member_id: &str) -> serde_json::Value {
    json!({
        "type": "RegisterPatient",
        "name": {"family": "Doe", "given": ["Jane"]},
        "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN",
        "coverage": {"payer_id": "ACME", "member_id": member_id, "plan": "gold"},
    })
}

/// `careflow serve` with the process managers on and `env`, and a system token.
fn serve(dir: &Path, env: &[(&str, &str)]) -> (Server, String) {
    let token = token_with_env(dir, env, "system", "ehr");
    let mut cmd = careflow(dir);
    cmd.env("CAREFLOW_PROCESS_MANAGERS", "true");
    for (key, value) in env {
        cmd.env(key, value);
    }
    (Server::spawn(cmd), token)
}

/// A careflow whose `payer_url` is the fake payer behind a TLS front, trusting a CA of the
/// test's (`payer_tls_ca_file`); the front's certificate is signed by that CA or, when
/// `trusted` is false, by another. Registers `mrn` covered under `member` and waits until the
/// account reads `status`.
async fn through_https_payer(
    trusted: bool,
    extra: &[(&str, &str)],
    (mrn, member, status): (&str, &str, &str),
) -> (TempDir, FakePayer, TlsFront, Server, Api) {
    let dir = TempDir::new();
    let ca = TestCa::new("careflow test payer CA");
    let ca_file = ca.write(&dir.path(), "payer-ca.pem");
    let signer = if trusted {
        ca
    } else {
        TestCa::new("someone else's CA")
    };
    let payer = FakePayer::start();
    // The right names; the signer decides.
    let front = TlsFront::start(&payer.url, &signer.issue(&LOCAL));
    let mut env = vec![
        ("CAREFLOW_PAYER_URL", front.url.as_str()),
        ("CAREFLOW_PAYER_TLS_CA_FILE", ca_file.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    let (server, ehr) = serve(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(&ehr, "patient-accounts", mrn, register(member))
        .await;
    wait_account_status(&api, &ehr, mrn, status).await;
    (dir, payer, front, server, api)
}

#[tokio::test]
async fn an_https_payer_with_a_certificate_of_the_configured_ca_answers_the_eligibility_check() {
    let (_dir, payer, front, _server, _api) =
        through_https_payer(true, &[], ("MRN-TLS-1", "eligible-tls", "active")).await;
    assert_eq!(payer.requests_for("eligible-tls"), 1);
    assert!(front.handshakes() >= 1);
    assert_eq!(front.refused(), 0);
}

#[tokio::test]
async fn an_https_payer_whose_certificate_the_configured_ca_did_not_sign_is_never_trusted() {
    // Each check fails as a transport failure and is retried; at the deadline the
    // registration is flagged self-pay, as any unanswered check is. It never reads the
    // stranger's answer.
    let extra = [
        ("CAREFLOW_PAYER_ATTEMPTS", "2"),
        ("CAREFLOW_ELIGIBILITY_DEADLINE_SECONDS", "3"),
    ];
    let (_dir, payer, front, _server, api) =
        through_https_payer(false, &extra, ("MRN-TLS-2", "eligible-mitm", "self_pay")).await;
    assert!(front.refused() >= 2, "retried: {} refused", front.refused());
    assert_eq!(front.handshakes(), 0);
    assert_eq!(payer.requests_for("eligible-mitm"), 0);
    let transport = metric(&api, "careflow_payer_requests_total{outcome=\"transport\"}").await;
    assert!(transport.unwrap_or(0.0) >= 2.0, "{transport:?}");
}

/// A careflow node whose `odoo_url` is the fake Odoo behind a TLS front with a certificate
/// `signer` made, trusting `ca` (`odoo_tls_ca_file`); and a system token.
async fn through_https_odoo(
    odoo: &FakeOdoo,
    ca: &TestCa,
    signer: &TestCa,
) -> (TempDir, TlsFront, Server, Api, String) {
    let dir = TempDir::new();
    let ca_file = ca.write(&dir.path(), "odoo-ca.pem");
    let front = TlsFront::start(&odoo.url, &signer.issue(&LOCAL));
    let tls = [
        ("CAREFLOW_ODOO_URL", front.url.as_str()),
        ("CAREFLOW_ODOO_TLS_CA_FILE", ca_file.to_str().unwrap()),
    ];
    let server = crate::odoo::start(&dir.path(), odoo, &tls);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token_with_env(&dir.path(), &tls, "system", "ehr");
    (dir, front, server, api, ehr)
}

#[tokio::test]
async fn an_https_odoo_with_a_certificate_of_the_configured_ca_syncs_and_another_is_refused() {
    let odoo = FakeOdoo::start(crate::odoo::API_KEY);
    let ca = TestCa::new("careflow test Odoo CA");
    let (_dir, front, server, api, ehr) = through_https_odoo(&odoo, &ca, &ca).await;
    api.ok(&ehr, "patient-accounts", "MRN-TLS-O1", register("none"))
        .await;
    let (model, _) = eventually(WITHIN, "partner_MRN-TLS-O1 in Odoo", || async {
        xmlid(&odoo, "partner_MRN-TLS-O1")
    })
    .await;
    assert_eq!(model, "res.partner");
    assert!(front.handshakes() >= 1);
    assert_eq!(front.refused(), 0);
    drop(server);

    // Another node of the site, whose Odoo front shows a certificate of another CA.
    let stranger = TestCa::new("someone else's CA");
    let (_other_dir, impostor, _server, api, ehr) = through_https_odoo(&odoo, &ca, &stranger).await;
    let requests = odoo.requests();
    api.ok(&ehr, "patient-accounts", "MRN-TLS-O2", register("none"))
        .await;
    eventually(WITHIN, "the Odoo breaker to open", || async {
        let state = metric(&api, "careflow_circuit_breaker_state{service=\"odoo\"}").await?;
        (state == 2.0).then_some(())
    })
    .await;
    assert!(impostor.refused() >= 1);
    assert_eq!(impostor.handshakes(), 0);
    assert_eq!(odoo.requests(), requests, "nothing reached Odoo");
    assert_eq!(xmlid(&odoo, "partner_MRN-TLS-O2"), None);
}

#[tokio::test]
async fn serve_refuses_to_start_with_a_ca_file_it_cannot_use() {
    let dir = TempDir::new();
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let cases = [
        (
            "CAREFLOW_PAYER_TLS_CA_FILE",
            dir.path().join("missing.pem"),
            "payer_tls_ca_file cannot be used: the CA file",
            "missing.pem cannot be read: No such file or directory",
        ),
        (
            "CAREFLOW_ODOO_TLS_CA_FILE",
            not_pem.clone(),
            "odoo_tls_ca_file cannot be used: the CA file",
            "not-a-ca.pem holds no certificate",
        ),
    ];
    for (key, path, start, end) in cases {
        let mut cmd = careflow(&dir.path());
        cmd.env(key, &path).arg("serve");
        let (code, output) = run_to_end(&mut cmd);
        assert_eq!(code, Some(2), "{output}");
        assert!(
            output.contains(start) && output.contains(end),
            "{key}: {output}"
        );
        assert!(!output.contains("careflow listening"), "{output}");
    }
    // A database URL whose TLS settings cannot be honoured stops serve too, before it listens.
    let mut cmd = careflow(&dir.path());
    cmd.env("CAREFLOW_STORE", "postgres")
        .env(
            "CAREFLOW_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/test?sslmode=verify-full",
        )
        .arg("serve");
    let (code, output) = run_to_end(&mut cmd);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("sslmode=verify-full needs sslrootcert"),
        "{output}"
    );
}
