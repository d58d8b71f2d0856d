//! sha256 helpers: hex formatting and readers/writers that hash what passes through them.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

pub fn to_hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest {
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 0xf) as usize] as char);
    }
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

/// Normalises a user-given digest (`sha256:` prefix allowed, any case) to lowercase hex.
pub fn normalize_sha256(input: &str) -> Option<String> {
    let hex = input.strip_prefix("sha256:").unwrap_or(input).to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Hashes a whole file.
pub fn sha256_file(path: &std::path::Path) -> io::Result<String> {
    let mut reader = HashingReader::new(fs_err::File::open(path)?);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(reader.finish().0)
}

/// Hashes `len` bytes of `file` from `offset`, read at offsets (the file's position is left
/// alone).
pub fn sha256_range(file: &std::fs::File, offset: u64, len: u64) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let take = (len - done).min(buffer.len() as u64) as usize;
        file.read_exact_at(&mut buffer[..take], offset + done)?;
        hasher.update(&buffer[..take]);
        done += take as u64;
    }
    Ok(to_hex(&hasher.finalize()))
}

pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// The hex digest and byte count of everything read so far.
    pub fn finish(self) -> (String, u64) {
        (to_hex(&self.hasher.finalize()), self.bytes)
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Writes to a file and hashes what it writes on a thread of its own, a megabyte at a time, so
/// that neither the hash nor the write holds up the caller (`depot pack`, whose own thread reads
/// the files and feeds the compressors).
pub struct OffThreadHashingWriter {
    chunk: Vec<u8>,
    sender: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<io::Result<(String, u64)>>>,
}

const OFF_THREAD_CHUNK: usize = 1 << 20;

impl OffThreadHashingWriter {
    pub fn new(mut file: std::fs::File) -> Self {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let thread = std::thread::spawn(move || {
            let (mut hasher, mut bytes) = (Sha256::new(), 0u64);
            for chunk in receiver {
                hasher.update(&chunk);
                file.write_all(&chunk)?;
                bytes += chunk.len() as u64;
            }
            Ok((to_hex(&hasher.finalize()), bytes))
        });
        OffThreadHashingWriter {
            chunk: Vec::with_capacity(OFF_THREAD_CHUNK),
            sender: Some(sender),
            thread: Some(thread),
        }
    }

    /// Hands the chunk to the thread; the thread's error if it has stopped.
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(OFF_THREAD_CHUNK));
        let sender = self.sender.as_ref().expect("the sender lives until finish");
        if sender.send(chunk).is_err() {
            return Err(self.join().err().unwrap_or_else(|| io::Error::other("the writing thread stopped")));
        }
        Ok(())
    }

    fn join(&mut self) -> io::Result<(String, u64)> {
        self.sender = None;
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| io::Error::other("the writing thread panicked"))?,
            None => Err(io::Error::other("the writing thread stopped")),
        }
    }

    /// Writes what is left; the hex digest and byte count of everything written.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        if !self.chunk.is_empty() {
            self.send()?;
        }
        self.join()
    }
}

impl Write for OffThreadHashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(OFF_THREAD_CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..take]);
        if self.chunk.len() == OFF_THREAD_CHUNK {
            self.send()?;
        }
        Ok(take)
    }

    /// Bytes reach the file when a chunk is full or at [`OffThreadHashingWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), bytes: 0 }
    }

    pub fn finish(self) -> (W, String, u64) {
        (self.inner, to_hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
