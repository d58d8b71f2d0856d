//! One SSH connection: who it is (the registry's key, the user name), and what each channel
//! runs: a console command (`exec`), the interactive console (`shell`), or SFTP.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use depot_registry::{Caller, Registry};
use russh::keys::ssh_key::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session as SshSession};
use russh::{Channel, ChannelId};

/// The SSH user of agent sessions, as seed 001's agents log in.
pub const AGENT_USER: &str = "deploy-agent";

const PROMPT: &str = "> ";

/// Session channels opened and not yet running anything.
const MAX_PENDING_CHANNELS: usize = 4;

pub struct Session {
    registry: Registry,
    spool: PathBuf,
    peer: SocketAddr,
    authenticated: Arc<AtomicBool>,
    uploads: Arc<crate::Activity>,
    pending: Arc<crate::Pending>,
    caller: Option<Caller>,
    /// The key's `SHA256:…` fingerprint: each command checks it is still known.
    fingerprint: String,
    agent: bool,
    channels: HashMap<ChannelId, Channel<Msg>>,
    ptys: HashSet<ChannelId>,
    /// Interactive consoles: the line typed so far.
    shells: HashMap<ChannelId, String>,
}

impl Session {
    pub fn new(
        registry: Registry,
        spool: PathBuf,
        peer: SocketAddr,
        authenticated: Arc<AtomicBool>,
        uploads: Arc<crate::Activity>,
        pending: Arc<crate::Pending>,
    ) -> Self {
        Session {
            registry,
            spool,
            peer,
            authenticated,
            uploads,
            pending,
            caller: None,
            fingerprint: String::new(),
            agent: false,
            channels: HashMap::new(),
            ptys: HashSet::new(),
            shells: HashMap::new(),
        }
    }

    /// The registry's caller for `key` logging in as `user`, if it may: a known key; agent keys
    /// only as `deploy-agent`.
    async fn caller_for(&self, user: &str, key: &russh::keys::ssh_key::PublicKey) -> Option<Caller> {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let caller = match self.registry.authenticate_ssh_key(&fingerprint).await {
            Ok(Some(caller)) => caller,
            Ok(None) => {
                tracing::info!(peer = %self.peer, %user, %fingerprint, "SSH key refused: unknown to the registry (depot key add)");
                return None;
            }
            Err(error) => {
                tracing::warn!(peer = %self.peer, "SSH key lookup failed: {error}");
                return None;
            }
        };
        if caller.role == depot_api::types::Role::Agent && user != AGENT_USER {
            tracing::info!(peer = %self.peer, %user, key = %caller.name, "SSH key refused: an agent key logs in as {AGENT_USER}");
            return None;
        }
        Some(caller)
    }

    fn caller(&self) -> Result<&Caller, russh::Error> {
        self.caller.as_ref().ok_or(russh::Error::Inconsistent)
    }

    /// The key's caller as the registry knows it now: a key revoked (or given another role)
    /// during the session counts from its next command.
    async fn current(&mut self) -> Option<Caller> {
        let found = self.registry.authenticate_ssh_key(&self.fingerprint).await.ok().flatten();
        if found.is_none() {
            tracing::info!(peer = %self.peer, key = ?self.caller.as_ref().map(|c| &c.name), "SSH key revoked during its session");
        }
        self.caller = found.clone();
        found
    }

    /// Runs one console line as the key's current caller.
    async fn command(&mut self, line: &str) -> crate::console::Output {
        match self.current().await {
            Some(caller) => crate::console::run(&self.registry, &caller, line).await,
            None => crate::console::Output { text: "the key of this session was revoked\n".to_owned(), status: 1 },
        }
    }

    /// Sends `text` on the channel (CRLF on a terminal), then, if `status` is given, ends it.
    fn send(
        &self,
        channel: ChannelId,
        text: &str,
        status: Option<u32>,
        session: &mut SshSession,
    ) -> Result<(), russh::Error> {
        if !text.is_empty() {
            let text = if self.ptys.contains(&channel) { text.replace('\n', "\r\n") } else { text.to_owned() };
            session.data(channel, text.into_bytes())?;
        }
        if let Some(status) = status {
            session.exit_status_request(channel, status)?;
            session.eof(channel)?;
            session.close(channel)?;
        }
        Ok(())
    }
}

impl russh::server::Handler for Session {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        match self.caller_for(user, offer.public_key).await {
            Some(_) => Ok(Auth::Accept),
            None => Ok(Auth::reject()),
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(caller) = self.caller_for(user, key.public_key).await else {
            return Ok(Auth::reject());
        };
        tracing::info!(peer = %self.peer, %user, key = %caller.name, "SSH session opened");
        self.fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        self.agent = user == AGENT_USER;
        self.caller = Some(caller);
        Ok(Auth::Accept)
    }

    async fn auth_succeeded(&mut self, _session: &mut SshSession) -> Result<(), Self::Error> {
        self.authenticated.store(true, Ordering::SeqCst);
        self.pending.release();
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // A channel waits here, unread, until its request: a few at most, since an unread
        // channel's queue filling up would stall the whole connection.
        if self.channels.len() >= MAX_PENDING_CHANNELS {
            reply.reject(russh::ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.ptys.insert(channel);
        session.channel_success(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // Driven from here, not from the channel: an unread channel would stall the connection.
        self.channels.remove(&channel);
        session.channel_success(channel)?;
        if self.agent {
            let text = format!("{AGENT_USER} sessions read configs/ and files/ over SFTP; they run no command\n");
            return self.send(channel, &text, Some(1), session);
        }
        let line = String::from_utf8_lossy(data).into_owned();
        let output = self.command(&line).await;
        self.send(channel, &output.text, Some(output.status), session)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut SshSession) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        session.channel_success(channel)?;
        if self.agent {
            let text = format!("{AGENT_USER} sessions read configs/ and files/ over SFTP; there is no console\n");
            return self.send(channel, &text, Some(1), session);
        }
        let name = self.caller()?.name.clone();
        self.shells.insert(channel, String::new());
        let text = format!("depot registry console ({name}); `help` lists the commands, `exit` leaves\n{PROMPT}");
        self.send(channel, &text, None, session)
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], session: &mut SshSession) -> Result<(), Self::Error> {
        // Data of other channels (SFTP) is not the console's.
        if !self.shells.contains_key(&channel) {
            return Ok(());
        }
        let echo = self.ptys.contains(&channel);
        for &byte in data {
            match byte {
                b'\r' | b'\n' => {
                    let line = std::mem::take(self.shells.get_mut(&channel).expect("a shell"));
                    if echo {
                        session.data(channel, b"\r\n".to_vec())?;
                    }
                    let line = line.trim();
                    if line == "exit" || line == "quit" {
                        self.shells.remove(&channel);
                        return self.send(channel, "", Some(0), session);
                    }
                    let output = self.command(line).await;
                    if output.text.starts_with("the key of this session was revoked") {
                        self.shells.remove(&channel);
                        return self.send(channel, &output.text, Some(1), session);
                    }
                    self.send(channel, &format!("{}{PROMPT}", output.text), None, session)?;
                }
                // Ctrl-D on an empty line leaves; Ctrl-C drops the line.
                4 if self.shells.get(&channel).is_some_and(String::is_empty) => {
                    self.shells.remove(&channel);
                    return self.send(channel, "\n", Some(0), session);
                }
                3 => {
                    self.shells.insert(channel, String::new());
                    self.send(channel, &format!("^C\n{PROMPT}"), None, session)?;
                }
                8 | 127 if self.shells.get_mut(&channel).and_then(String::pop).is_some() && echo => {
                    session.data(channel, b"\x08 \x08".to_vec())?;
                }
                8 | 127 => {}
                byte if byte >= 0x20 => {
                    self.shells.get_mut(&channel).expect("a shell").push(byte as char);
                    if echo {
                        session.data(channel, vec![byte])?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let Some(open) = self.channels.remove(&channel).filter(|_| name == "sftp") else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let caller = self.caller()?.clone();
        let registry = self.registry.clone();
        if self.agent {
            russh_sftp::server::run(open.into_stream(), crate::sftp::Tree::new(registry, caller)).await;
        } else {
            let uploads = crate::sftp::Uploads::new(
                registry,
                caller,
                self.fingerprint.clone(),
                self.spool.clone(),
                self.uploads.clone(),
            );
            russh_sftp::server::run(open.into_stream(), uploads).await;
        }
        Ok(())
    }

    /// The end of a console's input (`echo components | ssh host`): what is left of the line
    /// runs, and the session ends, as seed 001's console did.
    async fn channel_eof(&mut self, channel: ChannelId, session: &mut SshSession) -> Result<(), Self::Error> {
        let Some(line) = self.shells.remove(&channel) else { return Ok(()) };
        let mut status = 0;
        if !line.trim().is_empty() && line.trim() != "exit" {
            let output = self.command(line.trim()).await;
            self.send(channel, &output.text, None, session)?;
            status = output.status;
        }
        self.send(channel, "", Some(status), session)
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut SshSession) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.shells.remove(&channel);
        self.ptys.remove(&channel);
        Ok(())
    }
}
