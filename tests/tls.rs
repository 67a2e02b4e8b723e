//! Production connections over TLS: PostgreSQL (a cluster that accepts TLS only), the CRM
//! over `https://` and Kafka over `SSL`, each verified against a CA made with `openssl` when
//! the test env started (scripts/test-env.sh), and each refusing a wrong CA with a message
//! that names the setting instead of retrying.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use appealflow::config::{Config, CrmConfig, IdentifierType};
use appealflow::crm::double::{self, DoubleOptions};
use appealflow::crm::{check_certificate, Answer, CrmClient, FailReason, Identifier};
use appealflow::store::{ErrorClass, Store};
use common::kafka::Topics;
use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio::net::{TcpListener, TcpStream};

/// Where the test env put the CA (`ca.pem`), the server certificate and key it signed
/// (`server.pem`, `server.key`) and a CA that signed nothing (`other-ca.pem`).
fn pki() -> Option<PathBuf> {
    match std::env::var("APPEALFLOW_TEST_TLS_DIR") {
        Ok(dir) => Some(PathBuf::from(dir)),
        Err(_) if std::env::var("CI").is_ok() => {
            panic!("CI must run the TLS tests: APPEALFLOW_TEST_TLS_DIR is not set")
        }
        Err(_) => {
            eprintln!("APPEALFLOW_TEST_TLS_DIR is not set: skipping (scripts/test.sh sets it)");
            None
        }
    }
}

fn pem(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

// ------------------------------------------------------------------------ PostgreSQL

/// A database on the TLS-only cluster, at `sslmode` with `sslrootcert` = `ca`.
fn pg_url(database: &str, sslmode: &str, ca: &str) -> String {
    let addr = std::env::var("APPEALFLOW_TEST_PG_TLS").expect("APPEALFLOW_TEST_PG_TLS (scripts/test-env.sh)");
    let port = addr.rsplit(':').next().unwrap();
    format!("postgres://postgres@localhost:{port}/{database}?sslmode={sslmode}&sslrootcert={ca}")
}

#[tokio::test]
async fn postgres_with_verify_full_stores_and_reads_over_tls() {
    let Some(dir) = pki() else { return };
    let ca = pem(&dir, "ca.pem");
    let name = format!("appealflow_tls_{}", uuid_like());
    let mut conn: sqlx::PgConnection =
        sqlx::Connection::connect(&pg_url("postgres", "verify-full", &ca)).await.unwrap();
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await.unwrap();

    let db = TestDb::at(&pg_url(&name, "verify-full", &ca));
    let run = replay_lines(
        &config(appealflow::testkit::CONFIG),
        &db,
        &[msg("m-1", "acme-tg", "2026-12-01T10:00:00Z", r#"{"id":"tg-1"}"#, "hello over TLS")],
    )
    .await;
    // The cluster admits TLS connections only: that the store wrote and read at all says
    // every connection of its pool was verified against the CA.
    assert_eq!(run.events("appeal.opened").len(), 1);
    let client_id = run.events("appeal.opened")[0]["client"]["id"].as_str().expect("client_id").to_string();
    let card = card(&db, &client_id).await;
    assert_eq!(card.project_id, "acme");
    let _ = sqlx::Executor::execute(&mut conn, format!("DROP DATABASE {name} WITH (FORCE)").as_str()).await;
}

#[tokio::test]
async fn postgres_refuses_a_wrong_ca_and_a_plaintext_connection_at_once_naming_the_setting() {
    let Some(dir) = pki() else { return };
    let wrong = pg_url("postgres", "verify-full", &pem(&dir, "other-ca.pem"));
    let plain = pg_url("postgres", "disable", &pem(&dir, "ca.pem"));
    for (url, says) in [(wrong, ["sslrootcert", "certificate"]), (plain, ["sslmode", "no pg_hba.conf entry"])]
    {
        let started = Instant::now();
        // Retried forever if it were taken for an outage: it must come back at once.
        let result =
            tokio::time::timeout(Duration::from_secs(20), Store::connect_with_retry(&url, 1, None)).await;
        let Err(error) = result.expect("a refusal is not retried") else { panic!("connected with {url}") };
        assert_eq!(error.class(), ErrorClass::Fatal);
        let message = error.to_string();
        for word in says {
            assert!(message.contains(word), "{word:?} missing from: {message}");
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn the_binary_stops_on_a_wrong_postgres_ca_with_the_setting_in_its_message() {
    let Some(dir) = pki() else { return };
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), appealflow::testkit::CONFIG).unwrap();
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"))
        .args(["replay", "--no-progress", "--config"])
        .arg(config.path())
        .args(["--db", &pg_url("postgres", "verify-full", &pem(&dir, "other-ca.pem"))])
        .arg(&input)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("sslrootcert") && stderr.contains("certificate"), "{stderr}");
}

// ------------------------------------------------------------------------------- CRM

async fn https_crm(dir: &Path) -> (String, double::DoubleHandle) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/crm-clients.json");
    let clients = double::load_clients(&path).unwrap();
    let tls = Some((dir.join("server.pem"), dir.join("server.key")));
    let (addr, handle) =
        double::serve(clients, DoubleOptions { tls, ..Default::default() }, "127.0.0.1:0").await.unwrap();
    (format!("https://localhost:{}", addr.port()), handle)
}

fn crm_config(url: &str, ca_file: Option<PathBuf>) -> CrmConfig {
    CrmConfig { ca_file, retries: 3, backoff: Duration::from_millis(10), ..CrmConfig::with_url(url) }
}

#[tokio::test]
async fn the_crm_is_searched_over_https_with_its_ca_file() {
    let Some(dir) = pki() else { return };
    let (url, _crm) = https_crm(&dir).await;
    let config = crm_config(&url, Some(dir.join("ca.pem")));
    check_certificate("acme", &config, "projects[0].crm").await.expect("the CA verifies the CRM");
    let client = CrmClient::new("acme", &config).unwrap();
    let answer = client.search(&Identifier::new(IdentifierType::Phone, "+79991234567")).await;
    assert!(matches!(&answer, Answer::Found(c) if c.crm_id == "CRM-1001"), "{answer:?}");
}

#[tokio::test]
async fn a_crm_certificate_nobody_vouches_for_is_refused_without_retries_naming_ca_file() {
    let Some(dir) = pki() else { return };
    let (url, _crm) = https_crm(&dir).await;
    for ca_file in [None, Some(dir.join("other-ca.pem"))] {
        let config = crm_config(&url, ca_file);
        let refused = check_certificate("acme", &config, "projects[0].crm").await.expect_err("refused");
        assert!(refused.contains("projects[0].crm.ca_file"), "{refused}");
        let started = Instant::now();
        let answer = CrmClient::new("acme", &config)
            .unwrap()
            .search(&Identifier::new(IdentifierType::Phone, "+79991234567"))
            .await;
        let Answer::Failed { reason: reason @ FailReason::Certificate { .. } } = answer else {
            panic!("expected a certificate failure, got {answer:?}");
        };
        assert_eq!(reason.as_str(), "certificate");
        assert!(reason.detail().contains("crm.ca_file"), "{}", reason.detail());
        // Three retries with backoff would take longer than one refused handshake.
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    }
}

// ----------------------------------------------------------------------------- Kafka

/// A broker of its own behind a TLS-terminating proxy: tansu listens in plain text on one
/// port and advertises the proxy's, so every connection a client makes goes through TLS.
/// With a `login`, the user is created first and the broker then requires SASL (SCRAM).
struct TlsBroker {
    /// `localhost:PORT` of the proxy.
    addr: String,
    login: Option<(&'static str, &'static str)>,
    broker: std::process::Child,
    _state: tempfile::TempDir,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.broker.kill();
        let _ = self.broker.wait();
    }
}

async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port()
}

async fn wait_listening(port: u16) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "tansu did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl TlsBroker {
    async fn start(dir: &Path, login: Option<(&'static str, &'static str)>) -> Option<TlsBroker> {
        let bin = match std::env::var("APPEALFLOW_TEST_TANSU_BIN") {
            Ok(bin) => bin,
            Err(_) if std::env::var("CI").is_ok() => {
                panic!("CI must run the Kafka TLS tests: APPEALFLOW_TEST_TANSU_BIN is not set")
            }
            Err(_) => return None,
        };
        let (plain, proxy) = (free_port().await, free_port().await);
        let state = tempfile::tempdir().unwrap();
        let broker = |authentication: bool| {
            let mut command = std::process::Command::new(&bin);
            command
                .current_dir(state.path())
                .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{plain}")])
                .args(["--advertised-listener-url", &format!("tcp://localhost:{proxy}")])
                .args(["--storage-engine", "sqlite://tansu.db"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if authentication {
                command.arg("--authentication");
            }
            command.spawn().expect("tansu starts")
        };
        let mut running = broker(false);
        wait_listening(plain).await;
        if let Some((user, password)) = login {
            // The credentials go in through the broker, which then restarts requiring them.
            let created = std::process::Command::new(&bin)
                .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{plain}"), user, password])
                .args(["--mechanism", "scram512"])
                .output()
                .unwrap();
            assert!(
                created.status.success(),
                "tansu user create: {}",
                String::from_utf8_lossy(&created.stderr)
            );
            let _ = running.kill();
            let _ = running.wait();
            running = broker(true);
            wait_listening(plain).await;
        }
        let acceptor = double::tls_acceptor(&dir.join("server.pem"), &dir.join("server.key")).unwrap();
        let listener = TcpListener::bind(("127.0.0.1", proxy)).await.unwrap();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else { return };
                    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", plain)).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
        Some(TlsBroker { addr: format!("localhost:{proxy}"), login, broker: running, _state: state })
    }

    /// A client config of the test's own side, over TLS with the right CA (and the login).
    fn client(&self, dir: &Path) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.addr).set("ssl.ca.location", pem(dir, "ca.pem"));
        match self.login {
            Some((user, password)) => config
                .set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", user)
                .set("sasl.password", password),
            None => config.set("security.protocol", "SSL"),
        };
        config
    }

    /// `run`'s config: over TLS verified by `ca`, logging in with `password` when SASL.
    fn run_config(&self, topics: &Topics, ca: &str, password: &str, store_url: &str) -> Config {
        let toml = topics.config_toml(&self.addr, store_url, appealflow::testkit::CONFIG);
        let security = match self.login {
            Some((user, _)) => format!(
                "security_protocol = \"SASL_SSL\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"{user}\"\nsasl_password = \"{password}\"\n"
            ),
            None => "security_protocol = \"SSL\"\n".to_string(),
        };
        let toml = toml.replacen("[kafka]\n", &format!("[kafka]\n{security}ssl_ca_location = \"{ca}\"\n"), 1);
        Config::from_toml(&toml).unwrap()
    }

    /// `run` consumes an input and publishes its events through this broker.
    async fn carries_an_input_through_run(&self, dir: &Path) {
        let topics = Topics::random();
        let admin: AdminClient<DefaultClientContext> = self.client(dir).create().unwrap();
        let mut new = vec![NewTopic::new(&topics.inbound, 1, TopicReplication::Fixed(1))];
        for name in [&topics.commands, &topics.events, &topics.outbound, &topics.dlq] {
            new.push(NewTopic::new(name, 1, TopicReplication::Fixed(1)));
        }
        for created in admin.create_topics(&new, &AdminOptions::new()).await.expect("topics over TLS") {
            created.expect("topic created");
        }
        let producer: FutureProducer = self.client(dir).create().unwrap();
        let line = msg("m-tls", "acme-tg", "2026-12-01T10:00:00Z", r#"{"id":"tg-7"}"#, "hello through TLS");
        producer
            .send(FutureRecord::to(&topics.inbound).key("tg-7").payload(&line), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("produced over TLS");

        let db = TestDb::new(Kind::Postgres).await;
        let password = self.login.map_or("", |(_, p)| p);
        let config = self.run_config(&topics, &pem(dir, "ca.pem"), password, &db.url);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(appealflow::run::run(config.into(), db.store().await, async move {
            let _ = stopped.await;
        }));
        common::kafka::wait_until_applied(&db.url, &topics.inbound, 1, Duration::from_secs(60)).await;
        let _ = stop.send(());
        run.await.unwrap().expect("run over TLS");

        let reader: BaseConsumer = self
            .client(dir)
            .set("group.id", format!("reader-{}", uuid_like()))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        reader.subscribe(&[topics.events.as_str()]).unwrap();
        let started = Instant::now();
        let opened = loop {
            assert!(started.elapsed() < Duration::from_secs(60), "no appeal.opened over TLS");
            if let Some(m) = reader.poll(Duration::from_millis(200)) {
                let m = m.expect("read over TLS");
                let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                if value["type"] == "appeal.opened" {
                    break value;
                }
            }
        };
        assert_eq!(opened["cause"]["id"], "m-tls", "{opened}");
    }

    /// How `run` stops with this CA and password: its error, which must come within 30 s.
    async fn refuses_run(&self, ca: &str, password: &str) -> String {
        let db = TestDb::new(Kind::Postgres).await;
        let config = self.run_config(&Topics::random(), ca, password, &db.url);
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            appealflow::run::run(config.into(), db.store().await, std::future::pending()),
        )
        .await
        .expect("a refused certificate or login stops run instead of retrying");
        format!("{:#}", result.expect_err("run fails"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_consumes_and_publishes_through_a_tls_listener_verified_by_its_ca() {
    let Some(dir) = pki() else { return };
    let Some(broker) = TlsBroker::start(&dir, None).await else { return };
    broker.carries_an_input_through_run(&dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_on_a_broker_certificate_its_ca_did_not_sign_naming_ssl_ca_location() {
    let Some(dir) = pki() else { return };
    let Some(broker) = TlsBroker::start(&dir, None).await else { return };
    let error = broker.refuses_run(&pem(&dir, "other-ca.pem"), "").await;
    assert!(error.contains("kafka.ssl_ca_location"), "{error}");
    assert!(error.contains("certificate"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_logs_in_with_scram_over_sasl_ssl_and_stops_on_a_wrong_password_naming_it() {
    let Some(dir) = pki() else { return };
    let Some(broker) = TlsBroker::start(&dir, Some(("alice", "s3cret-scram"))).await else { return };
    broker.carries_an_input_through_run(&dir).await;
    let error = broker.refuses_run(&pem(&dir, "ca.pem"), "not-her-password").await;
    assert!(error.contains("kafka.sasl_password"), "{error}");
    assert!(!error.contains("not-her-password"), "the password is never in a message: {error}");
}

#[test]
fn check_config_explains_a_bad_protocol_and_sasl_without_a_user_and_never_shows_the_password() {
    let check = |toml: &str, env: &[(&str, &str)]| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), format!("{toml}\n{}", appealflow::testkit::CONFIG)).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"));
        command.arg("check-config").arg("--config").arg(file.path());
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, said) = check("[kafka]\nsecurity_protocol = \"TLS\"", &[]);
    assert!(!ok && said.contains("security_protocol") && said.contains("SASL_SSL"), "{said}");
    let (ok, said) =
        check("[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_mechanism = \"SCRAM-SHA-512\"", &[]);
    assert!(!ok && said.contains("kafka.sasl_username") && said.contains("kafka.sasl_password"), "{said}");
    let sasl = "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"svc\"";
    let (ok, said) = check(sasl, &[("APPEALFLOW__KAFKA__SASL_PASSWORD", "pa55-w0rd-never-shown")]);
    assert!(ok, "{said}");
    assert!(said.contains("SCRAM-SHA-512 as svc (password set)"), "{said}");
    assert!(!said.contains("pa55-w0rd-never-shown"), "{said}");
}
