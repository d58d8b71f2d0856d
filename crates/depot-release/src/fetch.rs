//! Downloads of `--artifact-url`: streamed to a temporary file under `R/.depot/tmp/` and hashed on
//! the way, so nothing is held in memory and an interrupted download leaves nothing behind.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use crate::digest::HashingWriter;
use crate::progress::{Progress, ProgressReader};
use crate::{Error, Result};

pub struct Download {
    pub file: tempfile::TempPath,
    pub sha256: String,
    pub size: u64,
}

pub fn download(url: &str, dir: &Path, progress: &dyn Progress) -> Result<Download> {
    let failed = |reason: String| Error::Download { url: url.to_owned(), reason };
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(None)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client.get(url).send().map_err(|e| failed(crate::error::chain(&e)))?;
    if !response.status().is_success() {
        return Err(failed(format!("the server answered {}", response.status())));
    }
    progress.start("downloading", response.content_length());
    let temp = tempfile::Builder::new().prefix("download-").tempfile_in(dir)?;
    let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, temp.as_file()));
    let mut reader = ProgressReader::new(response, progress);
    std::io::copy(&mut reader, &mut writer).map_err(|e| failed(crate::error::chain(&e)))?;
    let (mut buffered, sha256, size) = writer.finish();
    buffered.flush()?;
    drop(buffered);
    progress.finish();
    Ok(Download { file: temp.into_temp_path(), sha256, size })
}
