//! The overlay's promises, against a writer that counts its database reads: reads see the
//! batch's own writes, typed rows round-trip, a complete generation answers misses without
//! the database, only read rows stay cached, and a failed commit leaves nothing cached.

use std::cell::Cell;
use std::collections::HashMap;

use careflow_projections::{ViewStore, save_owned, take};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::overlay::{Overlay, RowCache};
use super::{Catalog, GenerationStatus, ViewError, ViewWriter, Write};

/// A writer over a map, counting fetches.
#[derive(Default)]
struct MapWriter {
    rows: HashMap<(String, String), String>,
    fetches: Cell<usize>,
}

impl ViewWriter for MapWriter {
    fn catalog(&mut self) -> Result<Catalog, ViewError> {
        Ok(Catalog::default())
    }

    fn create_generation(
        &mut self,
        _: &[&'static str],
        _: u32,
        _: GenerationStatus,
    ) -> Result<(), ViewError> {
        Ok(())
    }

    fn fetch(&self, table: &'static str, _: u32, key: &str) -> Result<Option<String>, ViewError> {
        self.fetches.set(self.fetches.get() + 1);
        Ok(self.rows.get(&(table.to_owned(), key.to_owned())).cloned())
    }

    fn commit(
        &mut self,
        _: u32,
        writes: &mut dyn Iterator<Item = Write<'_>>,
        _: u64,
    ) -> Result<(), ViewError> {
        for (table, key, row) in writes {
            let id = (table.to_owned(), key.to_owned());
            match row {
                Some(row) => self.rows.insert(id, row.to_owned()),
                None => self.rows.remove(&id),
            };
        }
        Ok(())
    }

    fn promote(&mut self, _: &[&'static str], _: u32, _: Option<u32>) -> Result<(), ViewError> {
        Ok(())
    }

    fn set_error(&mut self, _: u32, _: Option<&str>) -> Result<(), ViewError> {
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    n: u64,
}

/// Runs one batch: `f` against an overlay, then the commit (or a failed one).
fn batch(
    writer: &mut MapWriter,
    cache: &mut RowCache,
    commit: bool,
    f: impl FnOnce(&mut Overlay<'_, '_>),
) {
    let pending = {
        let mut overlay = Overlay::new(&*writer, 1, cache);
        f(&mut overlay);
        overlay.into_pending().unwrap()
    };
    if commit {
        let result = writer.commit(1, &mut pending.writes(), 1);
        pending.settle(result.is_ok());
    } else {
        pending.settle(false);
    }
}

#[test]
fn a_batch_reads_its_own_writes_and_typed_rows_round_trip() {
    let mut writer = MapWriter::default();
    let mut cache = RowCache::new(1 << 20, true);
    batch(&mut writer, &mut cache, true, |overlay| {
        for _ in 0..3 {
            let mut counter = take::<Counter>(overlay, "counters", "a")
                .unwrap()
                .unwrap_or(Counter { n: 0 });
            counter.n += 1;
            save_owned(overlay, "counters", "a", counter).unwrap();
        }
        // A plain read of a typed row sees its JSON.
        assert_eq!(overlay.get("counters", "a").unwrap(), Some(json!({"n": 3})));
        overlay.put("other", "x", json!(1)).unwrap();
        overlay.delete("other", "x").unwrap();
        assert_eq!(overlay.get("other", "x").unwrap(), None);
    });
    // The generation was complete: no miss went to the database.
    assert_eq!(writer.fetches.get(), 0);
    assert_eq!(
        writer.rows.get(&("counters".into(), "a".into())),
        Some(&r#"{"n":3}"#.to_owned())
    );
    assert!(!writer.rows.contains_key(&("other".into(), "x".into())));
}

#[test]
fn only_rows_that_were_read_stay_cached_and_known_keys_are_fetched() {
    let mut writer = MapWriter::default();
    let mut cache = RowCache::new(1 << 20, true);
    batch(&mut writer, &mut cache, true, |overlay| {
        let _ = take::<Counter>(overlay, "counters", "hot").unwrap();
        save_owned(overlay, "counters", "hot", Counter { n: 1 }).unwrap();
        save_owned(overlay, "lines", "written-once", Counter { n: 9 }).unwrap();
    });
    batch(&mut writer, &mut cache, true, |overlay| {
        // Cached: no fetch.
        assert_eq!(
            take::<Counter>(overlay, "counters", "hot").unwrap(),
            Some(Counter { n: 1 })
        );
        save_owned(overlay, "counters", "hot", Counter { n: 2 }).unwrap();
        // Never written to a tracked table: known absent, no fetch.
        assert_eq!(overlay.get("counters", "never").unwrap(), None);
    });
    assert_eq!(writer.fetches.get(), 0);
    batch(&mut writer, &mut cache, true, |overlay| {
        // A table written before it was ever read is not tracked: its misses are fetched,
        // whether the row exists (written once, not cached) or not.
        assert_eq!(
            overlay.get("lines", "written-once").unwrap(),
            Some(json!({"n": 9}))
        );
        assert_eq!(overlay.get("lines", "never").unwrap(), None);
    });
    assert_eq!(writer.fetches.get(), 2);
}

#[test]
fn a_failed_commit_leaves_the_database_as_the_only_truth() {
    let mut writer = MapWriter::default();
    writer
        .rows
        .insert(("counters".into(), "a".into()), r#"{"n":5}"#.into());
    // An existing generation: not complete, misses are fetched.
    let mut cache = RowCache::new(1 << 20, false);
    batch(&mut writer, &mut cache, false, |overlay| {
        let mut counter = take::<Counter>(overlay, "counters", "a").unwrap().unwrap();
        counter.n = 100;
        save_owned(overlay, "counters", "a", counter).unwrap();
    });
    assert_eq!(writer.fetches.get(), 1);
    assert_eq!(cache.bytes(), 0, "nothing of the failed batch is cached");
    batch(&mut writer, &mut cache, true, |overlay| {
        assert_eq!(
            take::<Counter>(overlay, "counters", "a").unwrap(),
            Some(Counter { n: 5 })
        );
        save_owned(overlay, "counters", "a", Counter { n: 6 }).unwrap();
    });
    assert_eq!(writer.fetches.get(), 2);
}

#[test]
fn the_cache_is_bounded_by_bytes_but_keeps_knowing_its_keys() {
    let mut writer = MapWriter::default();
    let mut cache = RowCache::new(200, true);
    batch(&mut writer, &mut cache, true, |overlay| {
        for i in 0..10 {
            let key = format!("k{i}");
            let _ = take::<Counter>(overlay, "counters", &key).unwrap();
            save_owned(overlay, "counters", &key, Counter { n: i }).unwrap();
        }
    });
    assert!(cache.bytes() <= 200, "trimmed to its bound");
    batch(&mut writer, &mut cache, true, |overlay| {
        assert_eq!(overlay.get("counters", "unknown").unwrap(), None);
        assert_eq!(
            overlay.get("counters", "k3").unwrap(),
            Some(json!({"n": 3}))
        );
    });
    // Only the known key was fetched.
    assert_eq!(writer.fetches.get(), 1);
}
