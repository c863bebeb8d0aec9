//! Views in the events' PostgreSQL schema, shared by every node.
//!
//! View tables are `(key TEXT COLLATE "C" PRIMARY KEY, row TEXT)`: `COLLATE "C"` makes keys
//! compare as bytes, as the projections' key layouts need; rows stay text because they are only
//! ever read whole by careflow, and `jsonb` would cost a parse on every write.
//!
//! Every method blocks: it drives the async client with `Handle::block_on`, which is legal on
//! the runner threads and inside `spawn_blocking`, where these are called (see
//! [`super::ViewBackend`]).
//!
//! A runner owns its projection through a session-level advisory lock on its own connection:
//! if the node dies, PostgreSQL ends the session and another node's runner takes over.

use std::collections::HashMap;
use std::sync::Mutex;

use careflow_projections::{ProjectionError, ViewStore};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::Value;
use tokio::runtime::Handle;
use tokio_postgres::{Client, Statement};

use super::{
    Catalog, Generation, GenerationStatus, ReadView, ViewBackend, ViewError, ViewWriter, Write,
    not_opened, physical, unavailable,
};
use crate::clock::Clock;
use crate::store::postgres::describe_pg_error;
use crate::store::side;

fn pg(error: tokio_postgres::Error) -> ViewError {
    unavailable(describe_pg_error(&error))
}

fn row_error(error: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Store(error.to_string().into())
}

/// Views in one PostgreSQL schema.
pub struct PostgresViews {
    pool: Pool,
    url: String,
    schema: String,
    handle: Handle,
    /// What stamps the catalog's times (not the server's `now()`: one place decides time).
    clock: Clock,
}

impl PostgresViews {
    /// Connects and creates the catalog when missing. Must be called inside a Tokio runtime,
    /// whose handle the blocking methods use later.
    ///
    /// # Errors
    /// [`ViewError::Unavailable`]; also when `schema` is not a plain identifier.
    pub async fn open(url: &str, schema: &str) -> Result<Self, ViewError> {
        let pool = side::open_tables(
            url,
            schema,
            &format!(
                "CREATE TABLE IF NOT EXISTS {schema}.projection_generations (
                    projection TEXT        NOT NULL,
                    generation INTEGER     NOT NULL,
                    status     TEXT        NOT NULL,
                    position   BIGINT      NOT NULL,
                    updated_at TIMESTAMPTZ NOT NULL,
                    last_error TEXT,
                    PRIMARY KEY (projection, generation)
                );
                CREATE TABLE IF NOT EXISTS {schema}.projection_rebuild_requests (
                    projection   TEXT PRIMARY KEY,
                    requested_at TIMESTAMPTZ NOT NULL
                );"
            ),
        )
        .await
        .map_err(not_opened)?;
        Ok(Self {
            pool,
            url: url.to_owned(),
            schema: schema.to_owned(),
            handle: Handle::current(),
            clock: Clock::system(),
        })
    }

    /// The same views with the catalog's times stamped by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn table(&self, table: &str, generation: u32) -> String {
        format!("{}.{}", self.schema, physical(table, generation))
    }
}

async fn read_catalog(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
    projection: &str,
) -> Result<Catalog, ViewError> {
    let mut catalog = Catalog::default();
    let rows = client
        .query(
            &format!(
                "SELECT generation, status, position, updated_at, last_error
                   FROM {schema}.projection_generations WHERE projection = $1"
            ),
            &[&projection],
        )
        .await
        .map_err(pg)?;
    for row in rows {
        let generation: i32 = row.get(0);
        let status: String = row.get(1);
        let position: i64 = row.get(2);
        let Some(status) = GenerationStatus::parse(&status) else {
            continue;
        };
        let entry = Generation {
            generation: u32::try_from(generation).unwrap_or(0),
            status,
            position: u64::try_from(position).unwrap_or(0),
            updated_at: row.get::<_, DateTime<Utc>>(3),
            last_error: row.get(4),
        };
        match status {
            GenerationStatus::Live => catalog.live = Some(entry),
            GenerationStatus::Building => catalog.building = Some(entry),
        }
    }
    catalog.rebuild_requested = client
        .query_opt(
            &format!("SELECT 1 FROM {schema}.projection_rebuild_requests WHERE projection = $1"),
            &[&projection],
        )
        .await
        .map_err(pg)?
        .is_some();
    Ok(catalog)
}

fn decode_row(row: Option<tokio_postgres::Row>) -> Option<Value> {
    row.and_then(|row| serde_json::from_str(row.get::<_, &str>(0)).ok())
}

/// The live generation's rows, read inside the reader's REPEATABLE READ transaction.
struct SnapshotRows<'a> {
    tx: &'a deadpool_postgres::Transaction<'a>,
    views: &'a PostgresViews,
    generation: u32,
}

impl ViewStore for SnapshotRows<'_> {
    fn get(&self, table: &'static str, key: &str) -> Result<Option<Value>, ProjectionError> {
        let name = self.views.table(table, self.generation);
        self.views
            .handle
            .block_on(async {
                let statement = self
                    .tx
                    .prepare_cached(&format!("SELECT row FROM {name} WHERE key = $1"))
                    .await?;
                self.tx.query_opt(&statement, &[&key]).await
            })
            .map(decode_row)
            .map_err(|e| row_error(describe_pg_error(&e)))
    }

    fn put(&mut self, table: &'static str, _: &str, _: Value) -> Result<(), ProjectionError> {
        Err(ProjectionError::Store(
            format!("{table} is read-only here").into(),
        ))
    }

    fn delete(&mut self, table: &'static str, _: &str) -> Result<(), ProjectionError> {
        Err(ProjectionError::Store(
            format!("{table} is read-only here").into(),
        ))
    }

    fn scan_range(
        &self,
        table: &'static str,
        from: &str,
        to: Option<&str>,
    ) -> Result<Vec<(String, Value)>, ProjectionError> {
        let name = self.views.table(table, self.generation);
        let rows = self
            .views
            .handle
            .block_on(async {
                match to {
                    Some(to) => {
                        self.tx
                            .query(
                                &format!(
                                    "SELECT key, row FROM {name}
                                      WHERE key >= $1 AND key < $2 ORDER BY key"
                                ),
                                &[&from, &to],
                            )
                            .await
                    }
                    None => {
                        self.tx
                            .query(
                                &format!(
                                    "SELECT key, row FROM {name} WHERE key >= $1 ORDER BY key"
                                ),
                                &[&from],
                            )
                            .await
                    }
                }
            })
            .map_err(|e| row_error(describe_pg_error(&e)))?;
        rows.iter()
            .map(|row| {
                let key: String = row.get(0);
                let value = serde_json::from_str(row.get::<_, &str>(1)).map_err(row_error)?;
                Ok((key, value))
            })
            .collect()
    }
}

impl ViewBackend for PostgresViews {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn read(
        &self,
        projection: &'static str,
        _tables: &'static [&'static str],
        f: &mut dyn FnMut(ReadView<'_>) -> Result<(), ViewError>,
    ) -> Result<(), ViewError> {
        let mut client = self.handle.block_on(self.pool.get()).map_err(unavailable)?;
        let tx = self
            .handle
            .block_on(
                client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start(),
            )
            .map_err(pg)?;
        let live = self
            .handle
            .block_on(read_catalog(&*tx, &self.schema, projection))?
            .live
            .ok_or_else(|| ViewError::NotBuilt(projection.to_owned()))?;
        let rows = SnapshotRows {
            tx: &tx,
            views: self,
            generation: live.generation,
        };
        let result = f(ReadView {
            rows: &rows,
            position: live.position,
        });
        self.handle.block_on(tx.commit()).map_err(pg)?;
        result
    }

    fn catalog(&self, projection: &str) -> Result<Catalog, ViewError> {
        self.handle.block_on(async {
            let client = self.pool.get().await.map_err(unavailable)?;
            read_catalog(&**client, &self.schema, projection).await
        })
    }

    fn request_rebuild(&self, projection: &str) -> Result<bool, ViewError> {
        self.handle.block_on(async {
            let client = self.pool.get().await.map_err(unavailable)?;
            let catalog = read_catalog(&**client, &self.schema, projection).await?;
            if catalog.rebuild_requested || catalog.building.is_some() {
                return Ok(false);
            }
            client
                .execute(
                    &format!(
                        "INSERT INTO {}.projection_rebuild_requests (projection, requested_at)
                         VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        self.schema
                    ),
                    &[&projection, &self.clock.now()],
                )
                .await
                .map_err(pg)?;
            Ok(true)
        })
    }

    fn writer(&self, projection: &'static str) -> Result<Box<dyn ViewWriter>, ViewError> {
        let key = format!("careflow-projection-{}-{projection}", self.schema);
        let client = self
            .handle
            .block_on(side::try_session_lock(&self.url, &key, "view writer"))
            .map_err(|error| unavailable(error.describe()))?
            .ok_or_else(|| ViewError::NotOwner(projection.to_owned()))?;
        Ok(Box::new(PostgresWriter {
            client,
            statements: Mutex::new(HashMap::new()),
            schema: self.schema.clone(),
            handle: self.handle.clone(),
            projection,
            clock: self.clock.clone(),
        }))
    }
}

/// A projection's writer: a connection of its own, holding the projection's advisory lock
/// for as long as it lives.
pub struct PostgresWriter {
    client: Client,
    /// Prepared statements by SQL text (the connection keeps them across transactions).
    statements: Mutex<HashMap<String, Statement>>,
    schema: String,
    handle: Handle,
    projection: &'static str,
    clock: Clock,
}

impl PostgresWriter {
    fn table(&self, table: &str, generation: u32) -> String {
        format!("{}.{}", self.schema, physical(table, generation))
    }

    async fn prepared(&self, sql: String) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self
            .statements
            .lock()
            .ok()
            .and_then(|s| s.get(&sql).cloned())
        {
            return Ok(statement);
        }
        let statement = self.client.prepare(&sql).await?;
        if let Ok(mut statements) = self.statements.lock() {
            statements.insert(sql, statement.clone());
        }
        Ok(statement)
    }
}

impl ViewWriter for PostgresWriter {
    fn catalog(&mut self) -> Result<Catalog, ViewError> {
        self.handle
            .block_on(read_catalog(&self.client, &self.schema, self.projection))
    }

    fn create_generation(
        &mut self,
        tables: &[&'static str],
        generation: u32,
        status: GenerationStatus,
    ) -> Result<(), ViewError> {
        let mut script = String::from("BEGIN;");
        for table in tables {
            let name = self.table(table, generation);
            script.push_str(&format!(
                "DROP TABLE IF EXISTS {name};
                 CREATE TABLE {name} (key TEXT COLLATE \"C\" PRIMARY KEY, row TEXT NOT NULL);"
            ));
        }
        let schema = &self.schema;
        let projection = self.projection;
        let generation = i32::try_from(generation).map_err(unavailable)?;
        let now = self.clock.now();
        self.handle.block_on(async {
            self.client.batch_execute(&script).await.map_err(pg)?;
            let done = async {
                self.client
                    .execute(
                        &format!(
                            "INSERT INTO {schema}.projection_generations
                                 (projection, generation, status, position, updated_at, last_error)
                             VALUES ($1, $2, $3, 0, $4, NULL)
                             ON CONFLICT (projection, generation) DO UPDATE
                                SET status = excluded.status, position = 0,
                                    updated_at = excluded.updated_at, last_error = NULL"
                        ),
                        &[&projection, &generation, &status.as_str(), &now],
                    )
                    .await?;
                self.client
                    .execute(
                        &format!(
                            "DELETE FROM {schema}.projection_rebuild_requests WHERE projection = $1"
                        ),
                        &[&projection],
                    )
                    .await?;
                self.client.batch_execute("COMMIT").await
            }
            .await;
            if let Err(error) = done {
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(pg(error));
            }
            Ok(())
        })
    }

    fn fetch(
        &self,
        table: &'static str,
        generation: u32,
        key: &str,
    ) -> Result<Option<String>, ViewError> {
        let name = self.table(table, generation);
        self.handle
            .block_on(async {
                let statement = self
                    .prepared(format!("SELECT row FROM {name} WHERE key = $1"))
                    .await?;
                self.client.query_opt(&statement, &[&key]).await
            })
            .map(|row| row.map(|row| row.get::<_, String>(0)))
            .map_err(pg)
    }

    fn commit(
        &mut self,
        generation: u32,
        writes: &mut dyn Iterator<Item = Write<'_>>,
        position: u64,
    ) -> Result<(), ViewError> {
        // Grouped by table: one UNNEST upsert and one delete per table, pipelined.
        let mut upserts: HashMap<&'static str, (Vec<String>, Vec<String>)> = HashMap::new();
        let mut deletes: HashMap<&'static str, Vec<String>> = HashMap::new();
        for (table, key, row) in writes {
            match row {
                Some(row) => {
                    let entry = upserts.entry(table).or_default();
                    entry.0.push(key.to_owned());
                    entry.1.push(row.to_owned());
                }
                None => deletes.entry(table).or_default().push(key.to_owned()),
            }
        }
        let position = i64::try_from(position).map_err(unavailable)?;
        let generation_sql = i32::try_from(generation).map_err(unavailable)?;
        let checkpoint = format!(
            "UPDATE {}.projection_generations
                SET position = $1, updated_at = $4, last_error = NULL
              WHERE projection = $2 AND generation = $3",
            self.schema
        );
        let projection = self.projection;
        let now = self.clock.now();
        let handle = self.handle.clone();
        let work = handle.block_on(async {
            let mut work = Vec::new();
            for (table, (keys, rows)) in &upserts {
                let name = self.table(table, generation);
                let statement = self
                    .prepared(format!(
                        "INSERT INTO {name} (key, row)
                         SELECT * FROM UNNEST($1::text[], $2::text[])
                         ON CONFLICT (key) DO UPDATE SET row = excluded.row"
                    ))
                    .await
                    .map_err(pg)?;
                work.push((statement, keys, Some(rows)));
            }
            for (table, keys) in &deletes {
                let name = self.table(table, generation);
                let statement = self
                    .prepared(format!("DELETE FROM {name} WHERE key = ANY($1::text[])"))
                    .await
                    .map_err(pg)?;
                work.push((statement, keys, None));
            }
            Ok::<_, ViewError>(work)
        })?;
        let client = &mut self.client;
        handle.block_on(async move {
            let tx = client.transaction().await.map_err(pg)?;
            let runs = work.iter().map(|(statement, keys, rows)| {
                let tx = &tx;
                async move {
                    match rows {
                        Some(rows) => tx.execute(statement, &[keys, rows]).await,
                        None => tx.execute(statement, &[keys]).await,
                    }
                }
            });
            for done in futures_util::future::join_all(runs).await {
                done.map_err(pg)?;
            }
            tx.execute(
                &checkpoint,
                &[&position, &projection, &generation_sql, &now],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)
        })
    }

    fn promote(
        &mut self,
        tables: &[&'static str],
        building: u32,
        retired: Option<u32>,
    ) -> Result<(), ViewError> {
        let schema = self.schema.clone();
        let projection = self.projection;
        let building = i32::try_from(building).map_err(unavailable)?;
        let drops: Vec<String> = retired
            .map(|g| tables.iter().map(|t| self.table(t, g)).collect())
            .unwrap_or_default();
        let retired = retired
            .map(i32::try_from)
            .transpose()
            .map_err(unavailable)?;
        if let Ok(mut statements) = self.statements.lock() {
            // Statements of the retired tables would fail once they are dropped.
            statements.clear();
        }
        let client = &mut self.client;
        self.handle.block_on(async move {
            let tx = client.transaction().await.map_err(pg)?;
            if let Some(retired) = retired {
                tx.execute(
                    &format!(
                        "DELETE FROM {schema}.projection_generations
                          WHERE projection = $1 AND generation = $2"
                    ),
                    &[&projection, &retired],
                )
                .await
                .map_err(pg)?;
            }
            tx.execute(
                &format!(
                    "UPDATE {schema}.projection_generations SET status = 'live'
                      WHERE projection = $1 AND generation = $2"
                ),
                &[&projection, &building],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            // DROP waits for readers still inside the retired generation, then removes it.
            for name in drops {
                client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                    .await
                    .map_err(pg)?;
            }
            Ok(())
        })
    }

    fn set_error(&mut self, generation: u32, error: Option<&str>) -> Result<(), ViewError> {
        let generation = i32::try_from(generation).map_err(unavailable)?;
        self.handle
            .block_on(self.client.execute(
                &format!(
                    "UPDATE {}.projection_generations SET last_error = $1
                      WHERE projection = $2 AND generation = $3",
                    self.schema
                ),
                &[&error, &self.projection, &generation],
            ))
            .map_err(pg)?;
        Ok(())
    }
}
