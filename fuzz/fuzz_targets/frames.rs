//! Seekable archives: any bytes staged frame by frame must give what unpacking them as one
//! stream gives, or be sent back to the stream. Each input is staged as one stream (noting the
//! frames a later deploy may replay), then frame by frame twice: knowing no frame (every frame
//! decoded alone), and knowing the frames the stream noted (those replayed). A frame-by-frame
//! result that the stream refused, or whose tree differs from the stream's, is a failure.
#![no_main]

use std::collections::HashMap;
use std::io::Write;

use depot_release::archive::FrameTable;
use depot_release::progress::NoProgress;
use depot_release::stage::{Framed, Limits, Stager};
use depot_release::store::ContentStore;
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits { max_files: 200, max_bytes: 1024 * 1024 };

fuzz_target!(|data: &[u8]| {
    let Ok(Some(table)) = FrameTable::read(&mut std::io::Cursor::new(data), data.len() as u64) else { return };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = ContentStore::new(&dir.path().join("store"));
    store.create_dirs().expect("the store's directories");

    let mut stream = Stager::create(&store, dir.path().join("stream"), LIMITS, false).expect("staging directory");
    let one = stream
        .add_layer_noting_frames(&mut &data[..], &NoProgress)
        .and_then(|(_, records)| stream.finish().map(|tree| (tree.entries, records)));

    let archive = dir.path().join("archive.tar.zst");
    std::fs::File::create(&archive).and_then(|mut f| f.write_all(data)).expect("the archive");
    let shas: Vec<String> = table
        .frames
        .iter()
        .map(|frame| sha256(&data[frame.offset as usize..][..frame.compressed as usize]))
        .collect();
    let noted: HashMap<_, _> = match &one {
        Ok((_, records)) => records.iter().map(|record| (record.sha256.clone(), record.clone())).collect(),
        Err(_) => HashMap::new(),
    };
    for (attempt, known) in [HashMap::new(), noted].iter().enumerate() {
        let mut file = std::fs::File::open(&archive).expect("the archive");
        let staging = dir.path().join(format!("framed-{attempt}"));
        let mut framed = Stager::create(&store, staging, LIMITS, false).expect("staging directory");
        let Ok(Framed::Staged { .. }) = framed.add_framed_layer(&mut file, &table, &shas, known, &NoProgress) else {
            continue;
        };
        framed.finish_framed_layer("archive", true);
        let Ok(tree) = framed.finish() else { continue };
        match &one {
            Ok((entries, _)) => assert_eq!(&tree.entries, entries, "frame by frame differs from the stream"),
            Err(e) => panic!("staged frame by frame, refused as a stream: {e}"),
        }
    }
});

fn sha256(bytes: &[u8]) -> String {
    let mut reader = depot_release::digest::HashingReader::new(bytes);
    std::io::copy(&mut reader, &mut std::io::sink()).expect("reading memory");
    reader.finish().0
}
