//! The runners of the CLI's commands other than `serve`: replay, audit, projection rebuilds,
//! erasure, store copy. `cli` parses and calls these; they open what they need and report.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use careflow_aggregates::StreamId;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{AuditCommand, Format};
use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::operations::audit;
use crate::operations::audit::export::Selection;
use crate::operations::audit::raw::LogSource;
use crate::operations::audit::verify::VerifyOptions;
use crate::operations::personal_data::{EncryptingSnapshots, EncryptingStore, PersonalKeys};
use crate::operations::store_copy;
use crate::runtime::actors::{ActorConfig, Registry};
use crate::runtime::views::{self};
use crate::store::snapshot;
use crate::store::sqlite::SqliteStore;
use crate::store::{self, EventStore};

pub(crate) fn audit_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the configured store for reading with personal data decrypted (or `null` once
/// erased), as the server shows it: what `replay` prints.
async fn open_decrypting(config: &Config) -> anyhow::Result<Arc<dyn EventStore>> {
    let stored = open_for_reading(config).await?;
    match PersonalKeys::open(config, &Clock::system()).await {
        Ok(keys) => Ok(Arc::new(EncryptingStore::new(stored, keys))),
        Err(error) => {
            stored.close().await;
            Err(anyhow::Error::new(error).context("opening the patient key store"))
        }
    }
}

/// Opens the configured store for reading: a read-only handle on SQLite (no lock, so it
/// works beside a running server), the shared database on PostgreSQL. The stored bytes:
/// personal data stays ciphertext, which is what the hash checks need.
async fn open_for_reading(config: &Config) -> anyhow::Result<Arc<dyn EventStore>> {
    match config.store {
        StoreKind::Sqlite => {
            let path = config.sqlite_path();
            anyhow::ensure!(
                path.exists(),
                "no event store at {} (check data_dir)",
                path.display()
            );
            Ok(Arc::new(SqliteStore::open_read_only(&path)?))
        }
        _ => Ok(store::open(config, &Clock::system()).await?),
    }
}

fn parse_stream(text: &str) -> anyhow::Result<StreamId> {
    StreamId::parse(text).with_context(|| format!("stream {text:?}"))
}

/// `careflow replay`.
pub(crate) async fn replay(
    config: &Config,
    stream: &str,
    as_of: Option<DateTime<Utc>>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let stream = parse_stream(stream)?;
    let store = open_decrypting(config).await?;
    let replayed = audit::replay::replay(store.as_ref(), &stream, as_of).await;
    store.close().await;
    let replayed = replayed?;
    let report = replayed.report(|state| {
        crate::inbound::http::views::render_replayed(state, replayed.stream.id(), replayed.version)
    });
    match format {
        Format::Table => print!("{}", report.render_table()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `careflow audit ...`.
pub(crate) async fn audit(config: &Config, what: AuditCommand) -> anyhow::Result<ExitCode> {
    let finding = |intact: bool| {
        if intact {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    };
    match what {
        AuditCommand::Verify {
            stream: Some(stream),
            format,
            ..
        } => {
            let stream = parse_stream(&stream)?;
            let store = open_for_reading(config).await?;
            let report = audit::verify::verify_stream(store.as_ref(), &stream).await;
            store.close().await;
            let report = report?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => {
                    for b in &report.breaks {
                        println!(
                            "BROKEN stream {} version {} position {}: {}",
                            report.stream, b.version, b.position, b.problem
                        );
                    }
                    println!(
                        "checked {} events of {}: {}",
                        report.events,
                        report.stream,
                        if report.intact { "intact" } else { "TAMPERED" }
                    );
                }
            }
            Ok(finding(report.intact))
        }
        AuditCommand::Verify {
            stream: None,
            from_position,
            public_keys,
            threads,
            format,
        } => {
            let mut trusted = public_keys
                .iter()
                .map(|k| audit::key::parse_public(k))
                .collect::<Result<Vec<_>, _>>()?;
            if trusted.is_empty()
                && let Some(own) = audit::key::load(&audit::key::key_path(config))?
            {
                trusted.push(own.verifying_key());
            }
            let defaults = VerifyOptions::default();
            let options = VerifyOptions {
                from_position: from_position.max(1),
                trusted_keys: trusted,
                threads: threads.unwrap_or(defaults.threads),
                progress: format == Format::Table,
                ..defaults
            };
            let source = LogSource::from_config(config)?;
            let report = audit::verify::verify_log(&source, &options).await?;
            match format {
                Format::Table => print!("{}", report.render()),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(finding(report.intact))
        }
        AuditCommand::Export {
            stream,
            patient,
            from,
            to,
            out,
            subject,
        } => {
            let selection = match (stream, patient, from, to) {
                (Some(stream), _, _, _) => Selection::Stream(parse_stream(&stream)?),
                (_, Some(mrn), _, _) => {
                    careflow_aggregates::stream_id::validate_id(&mrn)
                        .with_context(|| format!("MRN {mrn:?}"))?;
                    Selection::Patient(mrn)
                }
                (_, _, Some(from), Some(to)) => Selection::Between { from, to },
                _ => Selection::All,
            };
            let subject = subject
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok())
                .unwrap_or_else(|| "unknown".into());
            let key = audit::key::load_or_create(config)?;
            let clock = Clock::system();
            // Writing the access record needs the store's writer: on SQLite, the server's
            // lock must be free.
            let store = store::open(config, &clock).await.map_err(|e| {
                anyhow::Error::new(e).context(
                    "opening the event store for the access record (on SQLite, stop the server first)",
                )
            })?;
            // The stored bytes, not decrypted: each line's hash must check offline, and an
            // export then never carries personal data in clear (docs/audit-guide.md).
            let manifest = audit::export::export(
                store.as_ref(),
                &clock,
                &key,
                &selection,
                &out,
                &subject,
                true,
            )
            .await;
            store.close().await;
            let manifest = manifest?;
            println!(
                "exported {} events ({}) to {}\nmanifest: {}\npublic key: {}",
                manifest.body.count,
                manifest.body.selection,
                out.display(),
                audit::export::manifest_path(&out).display(),
                manifest.body.public_key
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::CheckExport {
            file,
            public_key,
            format,
        } => {
            let key = public_key
                .as_deref()
                .map(audit::key::parse_public)
                .transpose()?;
            let report = audit::export::check_export(&file, key.as_ref())?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => {
                    for p in &report.problems {
                        println!("ALTERED {p}");
                    }
                    println!(
                        "{} events, positions {}..{}, exported {} by {}, signed by {}: {}",
                        report.events,
                        report.manifest.first_position.unwrap_or(0),
                        report.manifest.last_position.unwrap_or(0),
                        report.manifest.exported_at,
                        report.manifest.exported_by,
                        report.manifest.public_key,
                        if report.intact() { "intact" } else { "ALTERED" }
                    );
                }
            }
            Ok(finding(report.intact()))
        }
        AuditCommand::Key => {
            let key = audit::key::load_or_create(config)?;
            println!("{}", hex::encode(key.verifying_key().to_bytes()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `careflow projections rebuild <name>` with a progress bar on stderr.
pub(crate) async fn rebuild_projection(config: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("rebuilding {msg} [{bar:40}] {pos}/{len} events ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(name.to_owned());
    let done = views::rebuild::rebuild(config, &Clock::system(), name, |progress| {
        bar.set_length(progress.head);
        bar.set_position(progress.position);
    })
    .await;
    bar.finish_and_clear();
    let done = done.with_context(|| format!("rebuilding projection {name}"))?;
    println!(
        "projection {} rebuilt: generation {} live at position {}{}",
        done.name,
        done.generation,
        done.position,
        if done.ran_here {
            " (no server was running it, so this command did)"
        } else {
            " (by the running server)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `careflow erase <mrn> --reason R`: the same work as `POST /v1/patient-accounts/{mrn}/erase`,
/// through an actor registry of this process. On SQLite the event store's lock must be free
/// (a running server holds it): the error says to use the HTTP route instead (exit 2).
pub(crate) async fn erase(
    config: &Config,
    mrn: &str,
    reason: &str,
    subject: Option<String>,
) -> anyhow::Result<ExitCode> {
    careflow_aggregates::stream_id::validate_id(mrn).with_context(|| format!("MRN {mrn:?}"))?;
    let subject = subject
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    // This command's one clock and id source, like `serve`'s.
    let clock = Clock::system();
    let stored = store::open(config, &clock).await.map_err(|e| {
        let hint = match config.store {
            StoreKind::Sqlite => {
                "opening the event store (a running server holds it on SQLite: stop it, or erase through POST /v1/patient-accounts/{mrn}/erase with an admin token)"
            }
            _ => "opening the event store",
        };
        anyhow::Error::new(e).context(hint)
    })?;
    let side = async {
        let personal = PersonalKeys::open(config, &clock)
            .await
            .context("opening the patient key store")?;
        let snapshots = snapshot::open(config, &clock)
            .await
            .context("opening the snapshot store")?;
        Ok::<_, anyhow::Error>((personal, snapshots))
    }
    .await;
    let (personal, snapshots) = match side {
        Ok(side) => side,
        Err(error) => {
            stored.close().await;
            return Err(error);
        }
    };
    let store: Arc<dyn EventStore> = Arc::new(EncryptingStore::new(
        Arc::clone(&stored),
        Arc::clone(&personal),
    ));
    let registry = Registry::start(
        Arc::clone(&store),
        Arc::new(EncryptingSnapshots::new(snapshots, Arc::clone(&personal))),
        ActorConfig {
            clock: clock.clone(),
            ..ActorConfig::from_config(config)
        },
    );
    let context = crate::runtime::actors::CommandContext {
        command_id: clock.new_id(),
        correlation_id: clock.new_id().to_string(),
        causation_id: clock.new_id().to_string(),
        principal: subject,
        source: "cli".into(),
        occurred_at: clock.now(),
        check_duplicate: false,
    };
    let outcome = crate::operations::personal_data::erase(
        &registry,
        &personal,
        stored.as_ref(),
        mrn,
        reason,
        context,
    )
    .await;
    registry.shutdown();
    store.close().await;
    let outcome = outcome.with_context(|| format!("erasing patient {mrn}"))?;
    match outcome.events.last() {
        Some(event) => println!(
            "erased personal data of patient {mrn}: {} at version {}, position {}; data key destroyed",
            event.event_type, event.version, event.position
        ),
        None => println!(
            "patient {mrn} was already erased (version {}); data key destroyed",
            outcome.version
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `careflow store copy --to kurrentdb`: the log, checked, into KurrentDB; then the KurrentDB
/// node's data dir (docs/event-store.md, "Moving a log").
pub(crate) async fn store_copy(
    config: &Config,
    url: Option<String>,
    target_dir: &std::path::Path,
    leave_side_tables: bool,
) -> anyhow::Result<ExitCode> {
    match config.store {
        StoreKind::Kurrentdb => anyhow::bail!(
            "the configured store is already KurrentDB: configure the source (store = \"sqlite\" or \"postgres\") and name the target with --url"
        ),
        StoreKind::Postgres if !leave_side_tables => anyhow::bail!(
            "a KurrentDB node keeps its side stores in SQLite files, and moving PostgreSQL's side tables (patient keys, dead letters, snapshots, idempotency records) there is not supported; pass --leave-side-tables to copy the log, the secret files and the consumers' checkpoints only (docs/event-store.md, \"Moving a log\")"
        ),
        StoreKind::Sqlite => anyhow::ensure!(
            config.sqlite_path().exists(),
            "no event store at {} (check data_dir)",
            config.sqlite_path().display()
        ),
        StoreKind::Postgres => {}
    }
    let url = url
        .or_else(|| config.kurrentdb_url.as_ref().map(|u| u.expose().to_owned()))
        .context("no target: pass --url or configure kurrentdb_url")?;
    let clock = Clock::system();
    // The writer's handle: on SQLite it takes the store's lock, so a running server (which
    // would go on appending past what is copied) stops the copy here.
    let source = store::open(config, &clock).await.map_err(|e| {
        anyhow::Error::new(e).context("opening the source store (on SQLite, stop the server first)")
    })?;
    let target = Arc::new(
        crate::store::kurrentdb::KurrentStore::open(&url)
            .await
            .context("connecting to the target KurrentDB")?
            .with_clock(clock.clone()),
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] position {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("copying");
    let copied = store_copy::copy_log(source.as_ref(), &target, &bar).await;
    let copied = match copied {
        Ok(copied) => copied,
        Err(e) => {
            bar.finish_and_clear();
            source.close().await;
            return Err(anyhow::Error::new(e).context("copying the log"));
        }
    };
    bar.set_message("comparing");
    let map = store_copy::compare_logs(source.as_ref(), &target, copied.source_head, &bar).await;
    bar.finish_and_clear();
    source.close().await;
    let map = map.context("comparing the copy with the source")?;
    let side = store_copy::side_data::move_side_data(config, target_dir, &map, &clock)
        .await
        .context("writing the KurrentDB node's data dir")?;
    let mut node = config.clone();
    node.store = StoreKind::Kurrentdb;
    node.kurrentdb_url = Some(crate::config::Secret::new(url));
    node.data_dir = target_dir.to_owned();
    let signed = audit::checkpoint::Checkpointer::open(
        &node,
        Arc::clone(&target) as Arc<dyn EventStore>,
        clock,
    )
    .await
    .context("opening the new node's audit checkpoints")?
    .write()
    .await
    .context("signing the first audit checkpoint of the copy")?;
    println!(
        "copied {} events ({} commands written, {} already there) through source position {} in {:.1} s",
        copied.events,
        copied.written,
        copied.already_there,
        copied.source_head,
        copied.elapsed.as_secs_f64()
    );
    println!(
        "compared {} events: the copy holds the source's events, in order, every hash verified",
        map.len()
    );
    println!(
        "data dir {}: {} ({} consumer checkpoints and {} dead letters moved to the new positions); views are rebuilt at first start",
        target_dir.display(),
        side.files.join(", "),
        side.checkpoints,
        side.dead_letters
    );
    if let Some(checkpoint) = signed {
        println!(
            "signed audit checkpoint at position {} (log digest {})",
            checkpoint.position, checkpoint.log_digest
        );
    }
    if config.store == StoreKind::Postgres {
        println!(
            "left in PostgreSQL: patient keys, dead letters, snapshots, idempotency records (--leave-side-tables)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `careflow backup <dir>`.
pub(crate) fn backup(
    config: &Config,
    dir: &std::path::Path,
    with_master_key: bool,
) -> anyhow::Result<ExitCode> {
    let manifest =
        crate::operations::backup::backup(config, dir, &Clock::system(), with_master_key)
            .with_context(|| format!("backing up into {}", dir.display()))?;
    print_manifest("backed up", &manifest);
    if !with_master_key && crate::operations::personal_data::master_key_path(config).exists() {
        println!(
            "not backed up: master_key (keep it apart from the data; a restored node needs it: docs/operations.md)"
        );
    }
    if config.store == StoreKind::Postgres {
        println!(
            "the log and the side stores are tables in PostgreSQL: back the database up with pg_dump or point-in-time recovery (docs/operations.md)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `careflow restore <dir>`.
pub(crate) fn restore(config: &Config, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let manifest = crate::operations::backup::restore(config, dir).with_context(|| {
        format!(
            "restoring {} into {}",
            dir.display(),
            config.data_dir.display()
        )
    })?;
    print_manifest("restored", &manifest);
    println!("next: careflow audit verify, then careflow serve");
    Ok(ExitCode::SUCCESS)
}

fn print_manifest(done: &str, manifest: &crate::operations::backup::Manifest) {
    for file in &manifest.files {
        println!(
            "{done} {} ({} bytes, sha256 {})",
            file.name, file.bytes, file.sha256
        );
    }
    match manifest.head_position {
        Some(head) => println!(
            "backup of {} taken {}: the log through position {head}",
            manifest.store, manifest.created_at
        ),
        None => println!("backup of {} taken {}", manifest.store, manifest.created_at),
    }
}
