//! An object store in a directory: a large object uploaded in chunks (never held whole in
//! memory), read back whole and by byte range, listed by prefix page by page, replaced
//! atomically, deleted; then reopened to show what survives.
//!
//! Run: `cargo run --release --example object_store -- [--dir DIR] [--mib N]`

#[path = "common/args.rs"]
mod args;

use std::collections::BTreeMap;

use percore::runtime::Runtime;
use percore::storage::ObjectStore;
use percore::storage::file::FileIo;

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let a = args::Args::parse(
        &["--dir", "--mib"],
        &[],
        "object_store [--dir DIR] [--mib N]",
    );
    let mib: usize = a.get_or("--mib", 16);
    let tmp = tempfile::tempdir()?;
    let dir = a
        .get::<String>("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("objects"));
    let rt = Runtime::auto()?;
    let io = FileIo::for_worker(&rt.handle(), 0);
    let (d, io2) = (dir.clone(), io.clone());
    // The store lives on app worker 0, like any single-owner state.
    let h = rt.spawn_on(0, move || async move {
        let os = ObjectStore::open(io2, &d)
            .await
            .map_err(|e| e.to_string())?;
        let mut user = BTreeMap::new();
        user.insert("camera".to_string(), "x100".to_string());
        let mut w = os
            .put_stream("videos/2026/holiday.mp4", "video/mp4", user)
            .await
            .map_err(|e| e.to_string())?;
        for i in 0..mib {
            // 1 MiB chunks, as they would arrive from a socket.
            w.write(vec![(i % 251) as u8; 1 << 20])
                .await
                .map_err(|e| e.to_string())?;
        }
        let meta = w.finish().await.map_err(|e| e.to_string())?;
        println!(
            "put {} ({} bytes, {}, sha256 {})",
            meta.key, meta.size, meta.content_type, meta.sha256
        );
        let part = os
            .get_range(&meta.key, (1 << 20) - 2, 4)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        println!("bytes around the first MiB boundary: {part:?}");
        for i in 0..12 {
            os.put(
                &format!("notes/{i:02}.txt"),
                "text/plain",
                format!("note {i}").into_bytes(),
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        let mut after: Option<String> = None;
        let mut page_no = 0;
        loop {
            let page = os.list("notes/", after.as_deref(), 5);
            page_no += 1;
            println!(
                "page {page_no}: {:?}",
                page.objects
                    .iter()
                    .map(|m| m.key.as_str())
                    .collect::<Vec<_>>()
            );
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        os.put("notes/00.txt", "text/markdown", b"# replaced".to_vec())
            .await
            .map_err(|e| e.to_string())?;
        os.delete("notes/11.txt").await.map_err(|e| e.to_string())?;
        Ok::<_, String>(os.len())
    })?;
    let n = rt.block_on(h)??;
    println!("{n} objects before reopening");
    let d = dir.clone();
    let h = rt.spawn_on(0, move || async move {
        let os = ObjectStore::open(io, &d).await.map_err(|e| e.to_string())?;
        let v = os.get("notes/00.txt").await.map_err(|e| e.to_string())?;
        println!(
            "after reopening: {} objects; notes/00.txt = {:?}",
            os.len(),
            v.map(|v| String::from_utf8_lossy(&v).into_owned())
        );
        Ok::<_, String>(os.len())
    })?;
    let after = rt.block_on(h)??;
    if after != n {
        return Err(format!("{n} objects before reopening, {after} after").into());
    }
    rt.shutdown();
    Ok(())
}
