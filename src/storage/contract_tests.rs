//! One contract, run against every engine.

use super::sim_disk::SimDisk;
use super::{ColumnFamily, Engine, WriteBatch};

const CF: &str = "data";
const OTHER: &str = "other";

type Named = (&'static str, std::sync::Arc<dyn Engine>, tempfile::TempDir);

/// A bare SimDisk, and the engine the runtime opens for a data dir (RocksDB in
/// production, a registered SimDisk under simulation) with families of both
/// read patterns: the contract holds for either.
fn engines() -> Vec<Named> {
    let open = |families: &[ColumnFamily]| {
        let dir = tempfile::tempdir().unwrap();
        (crate::runtime::open_engine(dir.path(), families).unwrap(), dir)
    };
    let (any, any_dir) = open(&[ColumnFamily::any(CF), ColumnFamily::any(OTHER)]);
    let (scanned, scanned_dir) = open(&[ColumnFamily::scanned_at_open(CF), ColumnFamily::scanned_at_open(OTHER)]);
    vec![
        ("simdisk", std::sync::Arc::new(SimDisk::new()), tempfile::tempdir().unwrap()),
        ("runtime engine", any, any_dir),
        ("runtime engine, families scanned at open", scanned, scanned_dir),
    ]
}

fn batch(ops: &[(&'static str, &str, Option<&str>)]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for (cf, key, value) in ops {
        match value {
            Some(v) => b.put(cf, key.as_bytes(), v.as_bytes()),
            None => b.delete(cf, key.as_bytes()),
        }
    }
    b
}

fn keys(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<String> {
    pairs.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect()
}

#[test]
fn get_returns_what_was_written_and_none_after_delete() {
    for (name, e, _dir) in engines() {
        e.write(batch(&[(CF, "k", Some("v1"))]), false).unwrap();
        assert_eq!(e.get(CF, b"k").unwrap(), Some(b"v1".to_vec()), "{name}");
        assert_eq!(e.get(OTHER, b"k").unwrap(), None, "{name}: column families are separate");
        e.write(batch(&[(CF, "k", None)]), true).unwrap();
        assert_eq!(e.get(CF, b"k").unwrap(), None, "{name}");
    }
}

#[test]
fn scan_is_ordered_bounded_and_limited() {
    for (name, e, _dir) in engines() {
        e.write(batch(&[(CF, "b", Some("")), (CF, "a", Some("")), (CF, "d", Some("")), (CF, "c", Some(""))]), true)
            .unwrap();
        assert_eq!(keys(e.scan(CF, b"", None, usize::MAX).unwrap()), ["a", "b", "c", "d"], "{name}");
        assert_eq!(keys(e.scan(CF, b"b", Some(b"d"), usize::MAX).unwrap()), ["b", "c"], "{name}");
        assert_eq!(keys(e.scan(CF, b"a", None, 2).unwrap()), ["a", "b"], "{name}");
        assert_eq!(e.last(CF).unwrap().map(|(k, _)| k), Some(b"d".to_vec()), "{name}");
        assert_eq!(e.last(OTHER).unwrap(), None, "{name}");
    }
}

#[test]
fn batch_is_atomic_and_ordered_with_range_delete() {
    for (name, e, _dir) in engines() {
        e.write(batch(&[(CF, "a", Some("1")), (CF, "b", Some("1")), (CF, "c", Some("1"))]), true).unwrap();
        let mut b = WriteBatch::new();
        b.delete_range(CF, b"a".to_vec(), b"c".to_vec());
        b.put(CF, b"b".to_vec(), b"2".to_vec());
        e.write(b, true).unwrap();
        assert_eq!(e.get(CF, b"a").unwrap(), None, "{name}");
        assert_eq!(e.get(CF, b"b").unwrap(), Some(b"2".to_vec()), "{name}: later op wins");
        assert_eq!(e.get(CF, b"c").unwrap(), Some(b"1".to_vec()), "{name}: range end is exclusive");
    }
}

#[test]
fn export_then_import_replaces_the_column_family() {
    for (name, e, _dir) in engines() {
        e.write(batch(&[(CF, "x", Some("1")), (CF, "y", Some("2"))]), true).unwrap();
        let exported = e.export(CF).unwrap();
        e.write(batch(&[(CF, "z", Some("3"))]), true).unwrap();
        e.import(CF, exported.clone()).unwrap();
        assert_eq!(e.export(CF).unwrap(), exported, "{name}");
        e.import(CF, Vec::new()).unwrap();
        assert!(e.export(CF).unwrap().is_empty(), "{name}");
    }
}

#[test]
fn runtime_engine_keeps_synced_data_across_reopen() {
    for family in [ColumnFamily::any(CF), ColumnFamily::scanned_at_open(CF)] {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = crate::runtime::open_engine(dir.path(), &[family]).unwrap();
            e.write(batch(&[(CF, "b", Some("2")), (CF, "a", Some("1")), (CF, "c", None)]), true).unwrap();
        }
        let e = crate::runtime::open_engine(dir.path(), &[family]).unwrap();
        assert_eq!(e.get(CF, b"a").unwrap(), Some(b"1".to_vec()), "{family:?}");
        assert_eq!(keys(e.scan(CF, b"", None, usize::MAX).unwrap()), ["a", "b"], "{family:?}: replayed in order");
    }
}
