//! Progress reporting without a dependency on a terminal library: the CLI implements [`Progress`]
//! with a progress bar when stderr is a terminal, everything else passes [`NoProgress`].

use std::io::{self, Read};

pub trait Progress: Sync {
    fn start(&self, _what: &str, _total: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// A reader that reports the bytes read through it.
pub struct ProgressReader<'p, R> {
    inner: R,
    progress: &'p dyn Progress,
}

impl<'p, R> ProgressReader<'p, R> {
    pub fn new(inner: R, progress: &'p dyn Progress) -> Self {
        ProgressReader { inner, progress }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
